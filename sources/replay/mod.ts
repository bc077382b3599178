/**
 * Replaying FBS recordings as simulated guests: `--guest replay:PATH`.
 *
 * @module
 */
export {
  createReplay,
  type PacedProgram,
  type RecordingInfo,
  replayProgram,
  scanRecording,
} from "./program.ts";
