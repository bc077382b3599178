/**
 * Security type None (1): no exchange at all. The caller sends SecurityResult
 * only from 3.8 on (`wantsSecurityResult()` in types.ts).
 *
 * @module
 */
import type { RfbStream } from "../stream.ts";
import {
  type SecurityContext,
  type SecurityOutcome,
  type SecurityType,
  SecurityTypeId,
} from "./types.ts";

/** No authentication, no encryption. */
export class NoneAuth implements SecurityType {
  readonly id = SecurityTypeId.None;

  run(stream: RfbStream, _ctx: SecurityContext): Promise<SecurityOutcome> {
    return Promise.resolve({ stream });
  }
}
