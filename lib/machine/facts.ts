/**
 * The machine a result was measured on, in one vocabulary: cpu, cores, memoryGiB, os, node. A run's config.json
 * records these (environment), teacher.json its cpu and cores (machine), environment.md all of them with the
 * package versions beside (lib/env.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

/** What every record says about the machine. */
export interface MachineFacts {
  cpu: string;          // the CPU model as the OS names it
  cores: number;        // logical CPUs Node sees
  memoryGiB: number;    // total memory, one decimal
  os: string;           // distribution name where known, kernel and architecture
  node: string;         // the Node.js version
}

/** The machine a number was measured on, as teacher.json records it. */
export type MachineRecord = Pick<MachineFacts, 'cpu' | 'cores'>;

/** The operating system: /etc/os-release's name where there is one, and the kernel and architecture. */
function operatingSystem(): string {
  let distribution = '';
  try {
    const release = fs.readFileSync('/etc/os-release', 'utf8');
    distribution = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(release)?.[1] ?? '';
  } catch {
    // not Linux, or a minimal container: the kernel line below still says what it is
  }
  const kernel = `${os.type()} ${os.release()} ${os.arch()}`;
  return distribution ? `${distribution} (${kernel})` : kernel;
}

/** The facts of this machine. */
export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() || 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: operatingSystem(),
    node: process.version,
  };
}

/** The machine a record names (a config.json's environment, teacher.json's machine), or null when it names none. */
export function machineOf(record: unknown): MachineRecord | null {
  const facts = record as { cpu?: unknown; cores?: unknown } | null | undefined;
  return typeof facts?.cpu === 'string' && typeof facts.cores === 'number' ? { cpu: facts.cpu, cores: facts.cores } : null;
}
