/**
 * The path notebooks read a shipped teacher's record from (../dist/lib/train/ship); the record is lib/teachers/record.ts.
 */
export { readTeacherRecord, type TeacherRecord } from '../teachers/record';
