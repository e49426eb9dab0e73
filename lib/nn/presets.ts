/** Moved to lib/config/network-presets.ts (configuration is the layer below the network); kept for old imports. */
export { NETWORK_PRESETS, networkPreset } from '../config/network-presets';
