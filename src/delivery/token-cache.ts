import type { Integration } from "../domain/integration.js";
import type { Dispatcher, FetchedToken } from "../dispatch/dispatcher.js";
import { SendDeadline } from "../dispatch/send-deadline.js";
import { tokenExpiry } from "./token-lifetime.js";

/** The dispatcher methods the cache uses: one token request, and the error of a wait that ran out of time. */
export type TokenSource = Pick<Dispatcher, "fetchToken" | "endedError">;

/** Settings of a {@link TokenCache}. */
export interface TokenCacheOptions {
  source: TokenSource;
  /** Lifetime of a token whose reply gives none, when the integration sets none (`TOKEN_LIFETIME_SECONDS`). */
  defaultLifetimeSeconds: number;
  /** Time budget of a token request that several sends share, in milliseconds. */
  sharedFetchTimeoutMs: number;
  /** Clock in epoch milliseconds; tests replace it. */
  now?: () => number;
}

/** A token for one SMS request. */
export interface TokenLease {
  token: string;
  /** True when an earlier send fetched the token, so a 401 may mean it went stale. */
  fromCache: boolean;
}

/** Cached state of one integration version. */
interface Entry {
  version: string;
  token: string | undefined;
  /** Time (epoch milliseconds) from which `token` is no longer used. */
  refreshAtMs: number;
  /**
   * Whether the expiry that the last auth reply set lets a token be reused: true for a lifetime
   * above 0, false for one of 0 or in the past (single-use tokens), undefined when it set none.
   */
  replyReusable: boolean | undefined;
  /** The token request that concurrent sends share, while it runs. */
  inflight: Promise<SharedToken> | undefined;
}

/** The token of a shared request, and whether its reply lets more than one send use it. */
interface SharedToken {
  token: string;
  reusable: boolean;
}

/**
 * Caches the token from each integration's `auth_url` in memory, until it
 * expires.
 *
 * Entries are keyed by integration id and checked against the version
 * (update time and row version), so a changed integration never gets a
 * token fetched for its old settings. When an integration's tokens may be
 * shared (the last auth reply set an expiry above 0, or it set none and the
 * configured lifetime is above 0), sends that find no valid token share one
 * token request. When that request's reply makes the token single-use, only
 * the send that started it uses the token, and the others fetch their own.
 * Otherwise each send fetches its own token, as a gateway that gives no
 * expiry, or an expiry of 0, may issue single-use tokens.
 *
 * NOTE: entries of deleted integrations stay in memory until the process
 * restarts; there is one small entry per integration that sent with a token.
 */
export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Returns a token for a send through `integration`: the cached one while
   * it is valid, else a new one.
   *
   * @throws GatewayError at stage `auth` when the token request fails, or
   *   when `deadline` ends while the send waits for a shared request.
   */
  async get(integration: Integration, deadline: SendDeadline): Promise<TokenLease> {
    const entry = this.entryFor(integration);
    if (entry.token !== undefined && this.now() < entry.refreshAtMs) {
      return { token: entry.token, fromCache: true };
    }

    if (!this.shareable(integration, entry)) {
      return this.fetchOwn(integration, entry, deadline);
    }

    const started = entry.inflight === undefined;
    entry.inflight ??= this.fetchShared(integration, entry);
    const shared = await this.waitFor(entry.inflight, integration, deadline);
    if (shared.reusable || started) {
      return { token: shared.token, fromCache: false };
    }
    // The reply made the token single-use, so it is left to the send that started the request.
    return this.fetchOwn(integration, entry, deadline);
  }

  /**
   * Drops `token` from the cache when it is still the cached token of
   * `integration`, after the gateway refused it.
   */
  invalidate(integration: Integration, token: string): void {
    const entry = this.entries.get(integration.id);
    if (entry !== undefined && entry.version === versionOf(integration) && entry.token === token) {
      entry.token = undefined;
    }
  }

  private entryFor(integration: Integration): Entry {
    const version = versionOf(integration);
    let entry = this.entries.get(integration.id);
    if (entry === undefined || entry.version !== version) {
      entry = { version, token: undefined, refreshAtMs: 0, replyReusable: undefined, inflight: undefined };
      this.entries.set(integration.id, entry);
    }
    return entry;
  }

  private lifetimeSeconds(integration: Integration): number {
    return integration.tokenLifetimeSeconds ?? this.options.defaultLifetimeSeconds;
  }

  private shareable(integration: Integration, entry: Entry): boolean {
    // The reply's expiry wins over the configured lifetime, as it does for the token's lifetime.
    return entry.replyReusable ?? this.lifetimeSeconds(integration) > 0;
  }

  /** Fetches a token for this send alone. */
  private async fetchOwn(integration: Integration, entry: Entry, deadline: SendDeadline): Promise<TokenLease> {
    const fetched = await this.options.source.fetchToken(integration, deadline);
    this.remember(entry, integration, fetched);
    return { token: fetched.token, fromCache: false };
  }

  /** Caches a fetched token while it may be reused, and returns whether it may. */
  private remember(entry: Entry, integration: Integration, fetched: FetchedToken): boolean {
    const now = this.now();
    const expiry = tokenExpiry(fetched, this.lifetimeSeconds(integration), now);
    const reusable = expiry.refreshAtMs > now;
    entry.token = reusable ? fetched.token : undefined;
    entry.replyReusable = expiry.fromReply ? reusable : undefined;
    entry.refreshAtMs = expiry.refreshAtMs;
    return reusable;
  }

  /**
   * Starts the token request that concurrent sends share. It has its own
   * deadline, because the send that started it may be canceled while
   * others still wait.
   */
  private fetchShared(integration: Integration, entry: Entry): Promise<SharedToken> {
    const deadline = new SendDeadline(this.options.sharedFetchTimeoutMs, undefined);
    const shared = this.options.source
      .fetchToken(integration, deadline)
      .then((fetched) => ({ token: fetched.token, reusable: this.remember(entry, integration, fetched) }))
      .finally(() => {
        deadline.dispose();
        if (entry.inflight === shared) {
          entry.inflight = undefined;
        }
      });
    // Every waiting send may give up first, and then nothing else observes a rejection.
    shared.catch(() => undefined);
    return shared;
  }

  /** Waits for a shared token request, or fails when this send's deadline ends first. */
  private async waitFor(shared: Promise<SharedToken>, integration: Integration, deadline: SendDeadline): Promise<SharedToken> {
    if (deadline.ended !== undefined) {
      throw this.options.source.endedError(integration, "auth", deadline);
    }
    let onEnd = (): void => undefined;
    const ended = new Promise<never>((_resolve, reject) => {
      onEnd = () => reject(this.options.source.endedError(integration, "auth", deadline));
    });
    deadline.signal.addEventListener("abort", onEnd, { once: true });
    try {
      return await Promise.race([shared, ended]);
    } finally {
      deadline.signal.removeEventListener("abort", onEnd);
    }
  }
}

/** Identifies an integration's version: its update time, and its row version when it has one. */
function versionOf(integration: Integration & { version?: number }): string {
  return `${integration.updateTime.getTime()}/${integration.version ?? ""}`;
}
