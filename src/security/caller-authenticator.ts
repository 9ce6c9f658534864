import { timingSafeEqual } from "node:crypto";

import type { Logger } from "pino";

import { PermissionDeniedError, UnauthenticatedError } from "../errors.js";
import type { CallAccessControl, IncomingCall } from "../rpc/call-pipeline.js";
import { hashApiKey, type ApiKeyEntry, type Scope } from "./api-keys.js";

/** The scope each procedure needs, and the procedures that need none. */
export interface ProcedureAccess {
  scopes: Readonly<Record<string, Scope>>;
  publicProcedures: ReadonlySet<string>;
}

/** `Bearer` (any case), one or more spaces, then an RFC 6750 token. */
const BEARER_PATTERN = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

const HOW_TO_SEND = 'send the header "authorization: Bearer <API key>" (gRPC metadata "authorization")';

/**
 * Authenticates callers by the API key in `authorization: Bearer <key>` and
 * checks the key's scopes against the procedure.
 *
 * Keys are compared by their SHA-256, in constant time, against every
 * configured key. With no keys configured, every call is allowed: the
 * start-up check allows that only on a loopback address.
 */
export class ApiKeyAuthenticator implements CallAccessControl {
  readonly #keys: readonly ApiKeyEntry[];
  readonly #access: ProcedureAccess;
  readonly #log: Logger;

  constructor(keys: readonly ApiKeyEntry[], access: ProcedureAccess, logger: Logger) {
    this.#keys = keys;
    this.#access = access;
    this.#log = logger;
  }

  /** True when API keys are configured, so calls must present one. */
  get enabled(): boolean {
    return this.#keys.length > 0;
  }

  /**
   * Returns the name of the caller's key, or undefined when authentication
   * is off or the procedure is public.
   *
   * @throws UnauthenticatedError when the header is missing, malformed or
   *   contains an unknown key. The message never repeats the header.
   */
  authenticate(procedure: string, call: IncomingCall): string | undefined {
    if (!this.enabled || this.#access.publicProcedures.has(procedure)) {
      return undefined;
    }

    const header = call.requestHeader("authorization");
    if (header === null || header.trim() === "") {
      throw new UnauthenticatedError(`missing API key: ${HOW_TO_SEND}`);
    }
    const token = BEARER_PATTERN.exec(header.trim())?.[1];
    if (token === undefined) {
      throw new UnauthenticatedError(`malformed authorization header: expected "Bearer <API key>"; ${HOW_TO_SEND}`);
    }

    const entry = this.#find(hashApiKey(token));
    if (entry === undefined) {
      throw new UnauthenticatedError("unknown API key: check the key, or ask the operator for one (npm run create-api-key)");
    }
    return entry.name;
  }

  /**
   * Checks that the caller's key has the scope the procedure needs.
   *
   * @throws PermissionDeniedError naming the scope needed, or when no scope
   *   is defined for the procedure, which is logged as an error because
   *   it is a gap in the procedure table.
   */
  authorize(procedure: string, caller: string | undefined): void {
    if (!this.enabled || this.#access.publicProcedures.has(procedure)) {
      return;
    }
    const entry = this.#keys.find((key) => key.name === caller);
    if (caller === undefined || entry === undefined) {
      throw new UnauthenticatedError(`missing API key: ${HOW_TO_SEND}`);
    }

    const scope = this.#access.scopes[procedure];
    if (scope === undefined) {
      this.#log.error({ procedure }, "procedure has no scope in PROCEDURE_SCOPES and is not public, so it is denied to every caller");
      throw new PermissionDeniedError(`${procedure} is not open to any API key; the service defines no scope for it`, caller);
    }
    if (!entry.scopes.has(scope)) {
      const held = [...entry.scopes].join(", ");
      throw new PermissionDeniedError(
        `API key "${caller}" lacks the scope ${scope}, which ${procedure} needs (the key has: ${held}); use a key with ${scope}`,
        caller,
      );
    }
  }

  /** Compares the hash with every key, so the time taken does not tell which key matched. */
  #find(hash: Buffer): ApiKeyEntry | undefined {
    let found: ApiKeyEntry | undefined;
    for (const entry of this.#keys) {
      if (timingSafeEqual(entry.hash, hash) && found === undefined) {
        found = entry;
      }
    }
    return found;
  }
}
