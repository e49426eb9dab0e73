/** Side-by-side summary of run configs: the settings that define an experiment and its compute budget. */
import * as aq from 'arquero';
import type ColumnTable from 'arquero/dist/types/table/column-table';
import type { RunConfig } from '../config/types';
import { forwardFlopsPerImage, passesPerImage } from '../nn/flops';

/** Parameters of the UNet of a config, counted from its layer plan without building tensors. */
export type ParamCounter = (cfg: RunConfig) => number;

/**
 * One row per named config: kind, dataset, network width/depth, batch, iterations, images, the ECT
 * schedule (q, stage length, mapping), optimiser, EMA, dropout, forward GFLOP per image and the
 * planned training compute in PFLOP (forward cost × passes per image × images; pretraining excluded).
 */
export function configSummaryTable(configs: Record<string, RunConfig>, countParams?: ParamCounter): ColumnTable {
  return aq.from(Object.entries(configs).map(([name, cfg]) => {
    const images = cfg.batch * cfg.iters;
    const forward = forwardFlopsPerImage(cfg.net);
    return {
      config: name,
      kind: cfg.kind,
      data: cfg.data.name,
      ...(countParams ? { params_M: Math.round(countParams(cfg) / 1e4) / 100 } : {}),
      channels: `${cfg.net.modelChannels} x [${cfg.net.channelMult.join(', ')}]`,
      blocks: cfg.net.numBlocks,
      batch: cfg.batch,
      iters: cfg.iters,
      mimg: images / 1e6,
      q: cfg.kind === 'tune' ? cfg.ect.q : null,
      stage_iters: cfg.kind === 'tune' ? cfg.ect.stageIters : null,
      mapping: cfg.kind === 'tune' ? cfg.ect.mapping : null,
      optimizer: `${cfg.optimizer.name} ${cfg.optimizer.lr}`,
      ema: cfg.ema.beta !== undefined ? `beta ${cfg.ema.beta}` : `half-life ${cfg.ema.halfLifeKimg} kimg`,
      dropout: cfg.net.dropout,
      forward_gflop_per_image: forward / 1e9,
      planned_train_pflop: (forward * passesPerImage(cfg) * images) / 1e15,
    };
  }));
}
