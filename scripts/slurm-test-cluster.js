#!/usr/bin/env node
/**
 * A one-node Slurm cluster on this machine, for the sweep tests (test/sweep.test.ts) and for trying
 * `ect sweep run --executor slurm` by hand: Debian's slurm-wlm and munge (the 'slurm' system part), run as root
 * from a folder of its own: a generated slurm.conf and munge key, munged on its own socket, slurmctld and slurmd
 * on free ports of localhost. Nothing outside the folder is touched; stop ends every process it started.
 *
 *   node scripts/slurm-test-cluster.js start <dir>   starts it; prints the SLURM_CONF to export
 *   node scripts/slurm-test-cluster.js stop <dir>    cancels its jobs, ends its daemons and their processes
 *
 * Settings this sandbox needs (and a plain Debian machine accepts): proctrack/linuxproc and task/none (no
 * cgroups), no accounting database (squeue keeps finished tasks for an hour instead: MinJobAge), SlurmUser root.
 */
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

/** The node's name in slurm.conf (slurmd is told it with -N, so the machine's hostname does not matter). */
const NODE_NAME = 'localhost';
/** Memory left to the machine itself when the node offers the rest to jobs (MiB). */
const MEMORY_MARGIN_MB = 1024;
const SBIN_DIRS = ['/usr/sbin', '/usr/bin', '/sbin'];

/** The path of a program, from PATH or the sbin folders (root's daemons live in /usr/sbin), or null. */
function findProgram(name) {
  const dirs = [...(process.env.PATH || '').split(path.delimiter).filter(Boolean), ...SBIN_DIRS];
  const dir = dirs.find((d) => fs.existsSync(path.join(d, name)));
  return dir ? path.join(dir, name) : null;
}

/** Why a test cluster cannot start on this machine, or null when it can. */
function unavailableReason() {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not root (the test cluster runs munged, slurmctld and slurmd as root)';
  if (!fs.existsSync('/etc/debian_version')) return "not Debian (the test cluster uses Debian's slurm-wlm and munge layout)";
  const missing = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'sinfo', 'scancel'].filter((p) => !findProgram(p));
  if (missing.length) return `missing ${missing.join(', ')} (apt-get install slurm-wlm munge)`;
  return null;
}

/** A free TCP port on localhost. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The files of a cluster folder. */
function layout(dir) {
  const root = path.resolve(dir);
  return {
    root,
    conf: path.join(root, 'slurm.conf'),
    keyDir: path.join(root, 'munge-key'),
    key: path.join(root, 'munge-key', 'munge.key'),
    socketDir: path.join(root, 'munge'),
    socket: path.join(root, 'munge', 'munge.socket'),
    state: path.join(root, 'state'),
    spool: path.join(root, 'spool'),
    logs: path.join(root, 'log'),
    pids: path.join(root, 'pids.json'),
  };
}

/** slurm.conf of a one-node cluster: this machine's CPUs and memory (less a margin), one default partition. */
function slurmConf(files, ports) {
  const memory = Math.max(512, Math.floor(os.totalmem() / 2 ** 20) - MEMORY_MARGIN_MB);
  return [
    '# one-node test cluster (scripts/slurm-test-cluster.js)',
    'ClusterName=ecttest',
    'SlurmctldHost=localhost',
    'SlurmUser=root',
    'SlurmdUser=root',
    'AuthType=auth/munge',
    `AuthInfo=socket=${files.socket}`,
    'CredType=cred/munge',
    `SlurmctldPort=${ports.slurmctld}`,
    `SlurmdPort=${ports.slurmd}`,
    `StateSaveLocation=${files.state}`,
    `SlurmdSpoolDir=${files.spool}`,
    `SlurmctldPidFile=${path.join(files.root, 'slurmctld.pid')}`,
    `SlurmdPidFile=${path.join(files.root, 'slurmd.pid')}`,
    `SlurmctldLogFile=${path.join(files.logs, 'slurmctld.log')}`,
    `SlurmdLogFile=${path.join(files.logs, 'slurmd.log')}`,
    'ProctrackType=proctrack/linuxproc',    // no cgroups needed
    'TaskPlugin=task/none',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    'JobCompType=jobcomp/none',
    'MpiDefault=none',
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_Core_Memory',
    'DefMemPerCPU=1024',
    'ReturnToService=2',
    'MinJobAge=3600',                        // finished tasks stay in squeue (there is no accounting database)
    'KillWait=10',                           // seconds between SIGTERM and SIGKILL of a cancelled task
    `NodeName=${NODE_NAME} NodeAddr=127.0.0.1 CPUs=${os.cpus().length} RealMemory=${memory} State=UNKNOWN`,
    `PartitionName=debug Nodes=${NODE_NAME} Default=YES MaxTime=INFINITE State=UP`,
    '',
  ].join('\n');
}

/** Starts a daemon in the foreground of its own process group, logging to a file; returns its pid. */
function startDaemon(program, args, env, logFile) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(findProgram(program), args, { env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  child.unref();
  return child.pid;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The last lines of a cluster's logs, for errors. */
function logTail(files) {
  if (!fs.existsSync(files.logs)) return '';
  return fs.readdirSync(files.logs).map((name) => {
    const lines = fs.readFileSync(path.join(files.logs, name), 'utf8').trim().split('\n');
    return `--- ${name}\n${lines.slice(-8).join('\n')}`;
  }).join('\n');
}

/** Runs a Slurm client command against the cluster. */
function client(files, program, args) {
  return spawnSync(findProgram(program) || program, args, { env: { ...process.env, SLURM_CONF: files.conf }, encoding: 'utf8', timeout: 30000 });
}

/**
 * Starts the cluster in `dir` (created): writes slurm.conf and a munge key, starts munged, slurmctld and slurmd,
 * and waits until the node is idle. Resolves to { conf, env, stop }: `env` has SLURM_CONF for the Slurm commands.
 */
async function startCluster(dir, { log = () => {}, timeoutMs = 60000 } = {}) {
  const reason = unavailableReason();
  if (reason) throw new Error(`cannot start a test cluster: ${reason}`);
  const files = layout(dir);
  for (const folder of [files.root, files.state, files.spool, files.logs, files.socketDir]) fs.mkdirSync(folder, { recursive: true });
  fs.mkdirSync(files.keyDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(files.socketDir, 0o755);
  fs.writeFileSync(files.key, require('node:crypto').randomBytes(1024), { mode: 0o400 });
  const ports = { slurmctld: await freePort(), slurmd: await freePort() };
  fs.writeFileSync(files.conf, slurmConf(files, ports));
  const env = { ...process.env, SLURM_CONF: files.conf };
  const pids = {};
  const record = () => fs.writeFileSync(files.pids, JSON.stringify(pids, null, 2));
  pids.munged = startDaemon('munged', ['--foreground', '--force', `--socket=${files.socket}`, `--key-file=${files.key}`,
    `--pid-file=${path.join(files.socketDir, 'munged.pid')}`, `--seed-file=${path.join(files.keyDir, 'munged.seed')}`,
    `--log-file=${path.join(files.logs, 'munged.log')}`], env, path.join(files.logs, 'munged.out'));
  record();
  const waitFor = async (what, ok) => {
    for (const started = Date.now(); Date.now() - started < timeoutMs; await sleep(250)) {
      if (ok()) return;
      const dead = Object.entries(pids).find(([, pid]) => !alive(pid));
      if (dead) throw new Error(`test cluster: ${dead[0]} exited while waiting for ${what}\n${logTail(files)}`);
    }
    throw new Error(`test cluster: no ${what} after ${timeoutMs / 1000} s\n${logTail(files)}`);
  };
  try {
    await waitFor('munge socket', () => fs.existsSync(files.socket));
    pids.slurmctld = startDaemon('slurmctld', ['-D'], env, path.join(files.logs, 'slurmctld.out'));
    record();
    pids.slurmd = startDaemon('slurmd', ['-D', '-N', NODE_NAME], env, path.join(files.logs, 'slurmd.out'));
    record();
    await waitFor('idle node in sinfo', () => /^idle/.test(client(files, 'sinfo', ['-h', '-N', '-o', '%t']).stdout.trim()));
  } catch (err) {
    await stopCluster(dir);
    throw err;
  }
  log(`test cluster up: ${files.conf} (slurmctld port ${ports.slurmctld}, slurmd port ${ports.slurmd})`);
  return { conf: files.conf, env: { SLURM_CONF: files.conf }, stop: () => stopCluster(dir) };
}

/** The pids above this process (its parent, their parents...), never to be ended. */
function ancestors() {
  const found = new Set();
  for (let pid = process.ppid; pid > 1 && !found.has(pid); ) {
    found.add(pid);
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return found;
}

/**
 * Pids of this cluster's processes: its daemons and job steps (slurmstepd) and the tasks of its jobs (SLURM_JOB_ID
 * set), each recognised by this cluster's SLURM_CONF in its environment. A shell that merely exported SLURM_CONF
 * is not one of them, nor is any process above this one.
 */
function clusterProcesses(files) {
  const marker = `SLURM_CONF=${files.conf}\0`;
  const above = ancestors();
  const found = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || above.has(pid)) continue;
    try {
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
      if (!environ.includes(marker)) continue;
      const name = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (['slurmstepd', 'slurmd', 'slurmctld', 'munged'].includes(name) || environ.includes('\0SLURM_JOB_ID=') || environ.startsWith('SLURM_JOB_ID=')) found.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

async function terminate(pids, graceMs) {
  for (const pid of pids) try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  for (const started = Date.now(); Date.now() - started < graceMs && pids.some(alive); ) await sleep(200);
  for (const pid of pids.filter(alive)) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  for (const started = Date.now(); Date.now() - started < 5000 && pids.some(alive); ) await sleep(100);
}

/**
 * Stops the cluster in `dir`: cancels its jobs, ends slurmd, slurmctld and munged, then any process still
 * carrying its SLURM_CONF (a job step of a task). Resolves to the pids that survived (none, normally).
 */
async function stopCluster(dir) {
  const files = layout(dir);
  const pids = fs.existsSync(files.pids) ? JSON.parse(fs.readFileSync(files.pids, 'utf8')) : {};
  if (pids.slurmctld && alive(pids.slurmctld)) {
    const jobs = client(files, 'squeue', ['-h', '-o', '%A']).stdout.split('\n').map((s) => s.trim()).filter(Boolean);
    if (jobs.length) client(files, 'scancel', jobs);
    for (const started = Date.now(); Date.now() - started < 20000; await sleep(500)) {
      if (!client(files, 'squeue', ['-h', '-o', '%A']).stdout.trim()) break;
    }
  }
  await terminate([pids.slurmd, pids.slurmctld].filter(Boolean), 10000);
  await terminate([pids.munged].filter(Boolean), 5000);
  await terminate(clusterProcesses(files), 5000);
  return [...Object.values(pids), ...clusterProcesses(files)].filter(alive);
}

module.exports = { unavailableReason, startCluster, stopCluster, findProgram };

if (require.main === module) {
  const [verb, dir] = process.argv.slice(2);
  const usage = 'usage: node scripts/slurm-test-cluster.js start|stop <dir>';
  (async () => {
    if (!dir) throw new Error(usage);
    if (verb === 'start') {
      const cluster = await startCluster(dir, { log: console.error });
      console.log(`export SLURM_CONF=${cluster.conf}`);
    } else if (verb === 'stop') {
      const left = await stopCluster(dir);
      if (left.length) throw new Error(`processes still running: ${left.join(', ')}`);
      console.error('test cluster stopped');
    } else {
      throw new Error(usage);
    }
  })().catch((err) => {
    console.error(`slurm-test-cluster: ${err.message}`);
    process.exit(1);
  });
}
