/**
 * Reading EDM-format pickles (never running pickled code) and reading and writing safetensors: the layer
 * under `ect import-edm` and `ect export --format safetensors`.
 */
export { PickleError, PyObject, dictAttributes, unpickle, unpickleAt, type GlobalTable, type PyDict } from './pickle';
export { NumpyDtype } from './python-globals';
export { floatToHalf, halfToFloat } from './float16';
export {
  TORCH_DTYPES, TorchStorage, TorchTensor, readLegacyTorchFile, readLegacyTorchStream, tensorBytes, tensorValues,
  type TensorValues, type TorchDtype,
} from './torch-storage';
export {
  EDM_PICKLE_GLOBALS, PersistentObject, edmNetwork, initKwargs, isModule, moduleAttributes, moduleClassName, moduleStateDict,
  moduleTree, parseEdmPickle, readEdmPickle, submodule, type PickledModule,
} from './edm-pickle';
export {
  decodeSafetensors, encodeSafetensors, isSafetensorsFile, readSafetensors, safeTensorFromTorch, safeTensorFromValues, safeTensorValues,
  torchDtypeOf, writeSafetensors, type SafeTensor, type SafetensorsDtype, type SafetensorsFile,
} from './safetensors';
export {
  EDM_MODEL_PREFIX, EdmMappingError, convertLayout, edmResampleBuffers, edmResampleFilter, edmTensorMap, inferEdmArchitecture, matchEdmStateDict,
  type EdmLayout, type EdmTensorMapping,
} from './edm-map';
export {
  DEFAULT_MAX_IMPORT_PARAMS, EDM_PRECONDS, SUPPORTED_EDM_NETWORKS, importEdmFile, importEdmPickle, importEdmSafetensors, type ImportLimits, type ImportedEdm,
} from './edm-import';
export { edmStateDict, encodeEdmSafetensors } from './edm-export';
export { importedRunConfig, writeImportedRun } from './edm-run';
