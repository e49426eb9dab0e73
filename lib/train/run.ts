/**
 * The path notebooks load a trained model from (../dist/lib/train/run); the loading itself is lib/runs/model.ts.
 */
export { disposeModel, loadRunModel, samplerModelOf, type LoadedModel } from '../runs/model';
