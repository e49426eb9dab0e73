/**
 * The machine a result was measured on, in one vocabulary: cpu, cpuArch, cores, memoryGiB, os, node. A run's
 * config.json records these (environment), teacher.json its cpu and cores (machine), environment.md all of them with
 * the package versions beside (lib/env.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { readCpuFacts, vectorDatapath, type CpuFacts } from './peak';

/** What every record says about the machine. */
export interface MachineFacts {
  cpu: string;          // the CPU model as the OS names it
  cpuArch?: string;     // its microarchitecture, family and model (cpuArchitecture); a VM's 'AMD EPYC' names no generation
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

/**
 * The microarchitecture of a CPU, from its family, model and flags as lib/machine/peak.ts reads them (e.g. 'AMD
 * Zen 4 (family 0x19, AVX-512 on 256-bit halves), model 0x11'), or the bare family and model where it is not known;
 * undefined without either (no /proc/cpuinfo). Two machines that both call themselves 'AMD EPYC' differ here.
 */
export function cpuArchitecture(facts: CpuFacts): string | undefined {
  if (facts.family === null || facts.model === null) return undefined;
  const family = `family 0x${facts.family.toString(16)}`, model = `model 0x${facts.model.toString(16)}`;
  const uarch = vectorDatapath(facts)?.uarch;
  if (!uarch) return `${facts.vendor || 'unknown vendor'} ${family}, ${model}`;
  if (uarch.includes(model)) return uarch;
  return uarch.includes(family) ? `${uarch}, ${model}` : `${uarch} (${family}, ${model})`;
}

/** The facts of this machine. */
export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  const cpuArch = cpuArchitecture(readCpuFacts());
  return {
    cpu: cpus[0]?.model?.trim() || 'unknown',
    ...(cpuArch ? { cpuArch } : {}),
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
