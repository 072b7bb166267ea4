import type { AttentionConfig, ResolvedConfig } from './config.js';
import { optionalBool, positiveInt } from './config-checks.js';
import { describeValue, QkvError } from './errors.js';

/**
 * The serving options (issue #18), validated apart from the rest so each reads on its own:
 *   softcap c     a finite number > 0 (Gemma 2 uses 50 for attention logits)
 *   sinks         true or false; true needs `weights.sinks` [numHeads] (checked with the weights)
 *   sinkTokens s  a positive integer, only together with `window` (StreamingLLM keeps the first
 *                 s tokens next to a sliding window; without a window every key is visible anyway)
 */
export function resolveServing(
  config: AttentionConfig,
  window: number | null,
): Pick<ResolvedConfig, 'softcap' | 'sinks' | 'sinkTokens'> {
  let softcap: number | null = null;
  if (config.softcap !== undefined && config.softcap !== null) {
    if (typeof config.softcap !== 'number' || !Number.isFinite(config.softcap) || config.softcap <= 0) {
      throw new QkvError(
        'INVALID_CONFIG',
        `config.softcap: expected a finite number > 0 (s = c·tanh(s/c)) or null, got ${describeValue(config.softcap)}`,
      );
    }
    softcap = config.softcap;
  }
  const sinks = optionalBool('config.sinks', config.sinks, false);
  let sinkTokens: number | null = null;
  if (config.sinkTokens !== undefined && config.sinkTokens !== null) {
    sinkTokens = positiveInt('config.sinkTokens', config.sinkTokens);
    if (window === null) {
      throw new QkvError(
        'INVALID_CONFIG',
        `config.sinkTokens: needs config.window (sink tokens stay visible next to a sliding window), got sinkTokens ${sinkTokens} without a window`,
      );
    }
  }
  return { softcap, sinks, sinkTokens };
}
