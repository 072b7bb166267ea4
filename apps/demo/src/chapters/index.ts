import type { StepName, Tensor } from 'qkv';
import type { View } from '../app';
import type { HeadInfo } from '../model/model';
import { queryKey } from './query-key';
import { scores } from './scores';
import { softmax } from './softmax';
import { tokens } from './tokens';
import { values } from './values';

/**
 * The page's chapters, in page order. A chapter is a `<section id="…">` in index.html plus a
 * module here that draws into it from the current `View`; `render()` (render.ts) calls each
 * one's `render` after every recompute and whenever the shown head changes.
 *
 * Adding a chapter: write its section in index.html, a module `chapters/<name>.ts` exporting a
 * `Chapter`, and add it to `CHAPTERS` below where it belongs in the page. Data a chapter needs
 * beyond the captured steps (another model, another run) it computes itself; `ChapterContext`
 * gives it the view, the shown head and the figure widths. (A chapter with its own model and
 * runs, like learned/chapter.ts, is mounted once in main.ts instead.)
 */
export interface Chapter {
  /** The id of its section in index.html. */
  readonly section: string;
  render(ctx: ChapterContext): void;
}

export interface ChapterContext {
  readonly view: View;
  /** The head the step-by-step grids show, and its description. */
  readonly head: number;
  readonly info: HeadInfo;
  /** Width of the per-head slices Q, K, V: dModel / numHeads. */
  readonly dk: number;
  /** Figure widths in px: the whole column, and one of two side by side. */
  readonly full: number;
  readonly half: number;
  /** A step's captured tensor (every step is captured). */
  captured(name: StepName): Tensor;
  /** Shows another head (redraws every chapter). */
  selectHead(index: number): void;
}

export const CHAPTERS: readonly Chapter[] = [tokens, queryKey, scores, softmax, values];
