// Mocha's settings for every test command. No spec here: `npm test` and `npm run test:unit` name their files
// (package.json), and `npx mocha dist/test/<name>.test.js` runs that file alone. The reporter is the spec reporter
// plus each file's duration (test/file-durations.ts).
'use strict';
const path = require('node:path');

module.exports = {
  timeout: 120000,
  reporter: path.join(__dirname, 'dist', 'test', 'file-durations.js'),
};
