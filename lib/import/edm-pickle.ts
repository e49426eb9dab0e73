/**
 * EDM's network pickles read as data: NVlabs/edm training snapshots (network-snapshot-*.pkl, a dict of
 * ema, loss_fn, augment_pipe and dataset_kwargs) and the released files such as
 * edm-cifar10-32x32-uncond-vp.pkl. EDM's classes pickle as persistent objects whose record carries the
 * class name, the source of their module (kept as a string, never run) and their state; this file turns
 * them into PersistentObject records and flattens a module tree into PyTorch's state_dict names.
 */
import {
  PickleError, PyObject, describeValue, functionGlobal, globalTable, readBytes, unpickle,
  type GlobalTable, type PickleContext, type PyDict, type PyTuple,
} from './pickle';
import { NUMPY_GLOBALS, PYTHON_GLOBALS } from './python-globals';
import { LEGACY_MAGIC, TORCH_GLOBALS, TorchTensor } from './torch-storage';

/**
 * An object of a class decorated with EDM's `persistence.persistent_class`, as its pickle records it:
 * the class name (EDMPrecond, SongUNet, UNetBlock, ...), the source of the Python module that defined it
 * (data only: it is never run), the persistence format version and the object's state (its __dict__).
 */
export class PersistentObject {
  constructor(
    readonly className: string,
    readonly moduleSrc: string,
    readonly version: number,
    readonly state: PyDict,
  ) {}
}

/** A torch module in a pickle: one of EDM's persistent classes, or an allowlisted torch class (ModuleDict). */
export type PickledModule = PersistentObject | PyObject;

/** Deepest module nesting flattened (EDM's deepest is about 5: precond > unet > enc > block > conv). */
export const MAX_MODULE_DEPTH = 64;

/** torch_utils.persistence._reconstruct_persistent_obj(meta): the meta record, read as data. */
function persistentObject(args: PyTuple, context: PickleContext): PersistentObject {
  const meta = args[0];
  if (!(meta instanceof Map)) context.fail(`a persistent object whose record is a ${describeValue(meta)}, not a dict`);
  const type = meta.get('type');
  const className = meta.get('class_name');
  const moduleSrc = meta.get('module_src');
  const version = meta.get('version');
  const state = meta.get('state');
  if (type !== 'class') context.fail(`a persistent object of type ${String(type)}, not 'class'`);
  if (typeof className !== 'string' || typeof moduleSrc !== 'string') context.fail('a persistent object without a class name and module source');
  if (typeof version !== 'number') context.fail(`persistent object ${className} without a version number`);
  if (!(state instanceof Map)) context.fail(`persistent object ${className} whose state is a ${describeValue(state)}, not a dict`);
  return new PersistentObject(className, moduleSrc, version, state);
}

/** The persistence hook EDM's pickles call. */
export const PERSISTENCE_GLOBALS: ReadonlyArray<readonly [string, unknown]> = [
  functionGlobal('torch_utils.persistence._reconstruct_persistent_obj', persistentObject),
];

/** The fixed allowlist of EDM pickles: Python basics, numpy scalars and dtypes, torch, EDM's persistence hook. */
export const EDM_PICKLE_GLOBALS: GlobalTable = globalTable(PYTHON_GLOBALS, NUMPY_GLOBALS, TORCH_GLOBALS, PERSISTENCE_GLOBALS);

/** Reads an EDM pickle's bytes; `source` names it in errors. Returns the top-level dict. */
export function parseEdmPickle(bytes: Uint8Array, source: string): PyDict {
  const value = unpickle(bytes, { source, globals: EDM_PICKLE_GLOBALS });
  if (value === LEGACY_MAGIC) throw new PickleError(source, "is a file torch.save wrote in its legacy format (read it with readLegacyTorchFile), not an EDM pickle");
  if (!(value instanceof Map)) throw new PickleError(source, `holds an object of type ${describeValue(value)}, not the dict EDM saves (ema, loss_fn, augment_pipe, dataset_kwargs)`);
  return value;
}

/** Reads an EDM pickle file (a training snapshot or a released network) into its top-level dict. */
export function readEdmPickle(file: string): PyDict {
  return parseEdmPickle(readBytes(file), file);
}

/** The network a snapshot holds under 'ema' (the weights EDM samples with). */
export function edmNetwork(snapshot: PyDict, source: string): PersistentObject {
  const ema = snapshot.get('ema');
  if (!(ema instanceof PersistentObject)) {
    throw new PickleError(source, `has no EDM network under 'ema' (found ${ema === undefined ? 'no such key' : describeValue(ema)}; keys: ${[...snapshot.keys()].map(String).join(', ')})`);
  }
  return ema;
}

/** True for a value that is a torch module (its state has the `_modules` dict torch keeps). */
export function isModule(value: unknown): value is PickledModule {
  return (value instanceof PersistentObject || value instanceof PyObject) && value.state.get('_modules') instanceof Map;
}

/** The module's class name without its module path: 'SongUNet', 'ModuleDict'. */
export function moduleClassName(module: PickledModule): string {
  return module instanceof PersistentObject ? module.className : module.className.slice(module.className.lastIndexOf('.') + 1);
}

/** One of torch's dicts in a module's state (_parameters, _buffers, _modules), empty when absent. */
function stateDict(module: PickledModule, key: string, source: string): PyDict {
  const dict = module.state.get(key) ?? new Map();
  if (!(dict instanceof Map)) throw new PickleError(source, `${moduleClassName(module)}.${key} is a ${describeValue(dict)}, not a dict`);
  return dict;
}

/**
 * Visits every module of a tree with its dotted name, parents first, each module once: a module reached a second
 * time (a cycle, or one shared by two parents, which EDM's networks never have) is refused, so a small file whose
 * modules form a deep DAG cannot cost one visit per path (2^depth). Refuses absurd depth too.
 */
function walkModules(root: PickledModule, source: string, visit: (module: PickledModule, name: string) => void): void {
  const onPath = new Set<PickledModule>();
  const visited = new Map<PickledModule, string>();
  const walk = (module: PickledModule, name: string, depth: number) => {
    if (depth > MAX_MODULE_DEPTH) throw new PickleError(source, `module tree deeper than ${MAX_MODULE_DEPTH} at '${name}'`);
    if (onPath.has(module)) throw new PickleError(source, `module tree has a cycle at '${name}'`);
    const first = visited.get(module);
    if (first !== undefined) throw new PickleError(source, `module '${name}' is the same object as '${first}': a module shared by two parents (EDM networks share none)`);
    visited.set(module, name);
    onPath.add(module);
    visit(module, name);
    for (const [childName, child] of stateDict(module, '_modules', source)) {
      if (child === null) continue;
      const childPath = name ? `${name}.${String(childName)}` : String(childName);
      if (!isModule(child)) throw new PickleError(source, `submodule '${childPath}' is a ${describeValue(child)}, not a module`);
      walk(child, childPath, depth + 1);
    }
    onPath.delete(module);
  };
  walk(root, '', 0);
}

/**
 * The module tree's parameters and persistent buffers under PyTorch's state_dict names, in PyTorch's order
 * (each module's parameters, then its buffers, then its submodules): 'model.enc.32x32_conv.weight', ...
 */
export function moduleStateDict(root: PickledModule, source = 'module'): Map<string, TorchTensor> {
  const tensors = new Map<string, TorchTensor>();
  walkModules(root, source, (module, name) => {
    const prefix = name ? `${name}.` : '';
    const nonPersistent = module.state.get('_non_persistent_buffers_set');
    const skip = nonPersistent instanceof Set ? nonPersistent : new Set();
    for (const [kind, entries] of [['parameter', stateDict(module, '_parameters', source)], ['buffer', stateDict(module, '_buffers', source)]] as const) {
      for (const [key, tensor] of entries) {
        if (tensor === null || (kind === 'buffer' && skip.has(key))) continue;
        if (!(tensor instanceof TorchTensor)) throw new PickleError(source, `${kind} '${prefix}${String(key)}' is a ${describeValue(tensor)}, not a tensor`);
        tensors.set(`${prefix}${String(key)}`, tensor);
      }
    }
  });
  return tensors;
}

/** Every module of the tree by dotted name ('' for the root) with its class name. */
export function moduleTree(root: PickledModule, source = 'module'): Map<string, string> {
  const tree = new Map<string, string>();
  walkModules(root, source, (module, name) => tree.set(name, moduleClassName(module)));
  return tree;
}

/** The module at a dotted path below `root` ('model.enc.8x8_conv'). */
export function submodule(root: PickledModule, path: string, source = 'module'): PickledModule {
  let module = root;
  for (const part of path ? path.split('.') : []) {
    const child = stateDict(module, '_modules', source).get(part);
    if (!isModule(child)) throw new PickleError(source, `no submodule '${path}' (stopped at '${part}')`);
    module = child;
  }
  return module;
}

/**
 * A module's plain attributes: the state entries that are not torch's bookkeeping (underscored names and
 * `training`), such as sigma_data, label_dim, use_fp16, beta_d, M, sigma_min, sigma_max, skip_scale.
 */
export function moduleAttributes(module: PickledModule): Map<string, unknown> {
  const attributes = new Map<string, unknown>();
  for (const [key, value] of module.state) {
    if (typeof key === 'string' && !key.startsWith('_') && key !== 'training') attributes.set(key, value);
  }
  return attributes;
}

/**
 * The keyword arguments a persistent object was constructed with, as EDM records them. Only the arguments
 * passed explicitly are there: a default left alone is absent, so read the structure from the stored
 * modules, not from these.
 */
export function initKwargs(object: PersistentObject): PyDict {
  const kwargs = object.state.get('_init_kwargs');
  return kwargs instanceof Map ? kwargs : new Map();
}
