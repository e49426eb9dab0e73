/**
 * A local static server for an exported site (sirv on node:http): `npm run web` and the browser tests use it. It sends
 * the cross-origin isolation headers, so the wasm backend may use its multithreaded build.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import sirv from 'sirv';

/** A running server: its address and how to stop it. */
export interface SiteServer { url: string; close(): Promise<void> }

/** Headers that make the page cross-origin isolated (SharedArrayBuffer, and so wasm threads). */
const ISOLATION_HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/** Serves `dir` on host:port (port 0: a free port); resolves once it listens. */
export async function serveSite(dir: string, options: { port?: number; host?: string } = {}): Promise<SiteServer> {
  const host = options.host ?? '127.0.0.1';
  const files = sirv(dir, {
    dev: true,                                   // re-read files on every request: a rebuilt site is served at once
    setHeaders: (res) => { for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value); },
  });
  const server = http.createServer((req, res) => files(req, res, () => {
    res.statusCode = 404;
    res.end('not found');
  }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}/`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
