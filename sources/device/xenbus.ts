/** XenbusState (xen/io/xenbus.h). */
export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  InitWait: 2,
  Initialised: 3,
  Connected: 4,
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusState = typeof XenbusState[keyof typeof XenbusState];

/** The name of a state, for logs. */
export function stateName(s: number): string {
  return Object.entries(XenbusState).find(([, v]) => v === s)?.[0] ?? `state ${s}`;
}

/** Parses a xenstore `state` value; Unknown for anything that is not a known number. */
export function parseState(v: string | undefined): XenbusState {
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 8 ? n as XenbusState : XenbusState.Unknown;
}
