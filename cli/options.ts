/** Argument parsers shared by the `ect` commands: each names the flag in its error. */
import { InvalidArgumentError } from 'commander';
import { parseSampleSteps, parseSeedRanges, type SeedRange } from '../lib/sample';

/** An integer >= min (0 by default). */
export function integer(name: string, min = 0) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || text.trim() === '') {
      throw new InvalidArgumentError(`${name} must be ${min === 1 ? 'a positive' : 'a non-negative'} integer, got '${text}'`);
    }
    return value;
  };
}

/** An integer >= 1. */
export function positiveInteger(name: string) {
  return integer(name, 1);
}

/** A finite number > 0. */
export function positiveNumber(name: string) {
  return (text: string): number => {
    const value = Number(text);
    if (!(value > 0) || !Number.isFinite(value) || text.trim() === '') throw new InvalidArgumentError(`${name} must be a positive number, got '${text}'`);
    return value;
  };
}

/** A finite number >= 0. */
export function nonNegativeNumber(name: string) {
  return (text: string): number => {
    const value = Number(text);
    if (!(value >= 0) || !Number.isFinite(value) || text.trim() === '') throw new InvalidArgumentError(`${name} must be a number >= 0, got '${text}'`);
    return value;
  };
}

/** A finite number >= 1: a growth factor. */
export function growthFactor(name: string) {
  return (text: string): number => {
    const value = Number(text);
    if (!(value >= 1) || !Number.isFinite(value) || text.trim() === '') throw new InvalidArgumentError(`${name} must be a number >= 1, got '${text}'`);
    return value;
  };
}

/** A finite number in [0, 1): a fraction such as a probability or a relative gain. */
export function fraction(name: string) {
  return (text: string): number => {
    const value = Number(text);
    if (!(value >= 0 && value < 1) || text.trim() === '') throw new InvalidArgumentError(`${name} must be a number in [0, 1), got '${text}'`);
    return value;
  };
}

/** 1, 2 or heun (lib/sample.ts parseSampleSteps), checked at parse time; the text is kept. */
export function sampleSteps(name: string) {
  return (text: string): string => {
    try {
      parseSampleSteps(text);
    } catch {
      throw new InvalidArgumentError(`${name} must be 1, 2 or heun, got '${text}'`);
    }
    return text;
  };
}

/** EDM-style seed ranges, 0-63,100-199 (lib/sample.ts parseSeedRanges), checked at parse time. */
export function seedRanges(text: string): SeedRange[] {
  try {
    return parseSeedRanges(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
