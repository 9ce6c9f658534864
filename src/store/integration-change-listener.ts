import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import type pg from "pg";
import type { Logger } from "pino";

import { untilAborted } from "../until-aborted.js";
import { ConnectionLoss } from "./connection-loss.js";
import { changeChannelSql, parseChange, pingPayload } from "./integration-change-channel.js";
import { loadPg } from "./pg-module.js";
import { POSTGRES_CONNECT_TIMEOUT_MS } from "./postgres-database.js";
import { summarizeDatabaseError } from "./storage-error.js";

/** Timing of an {@link IntegrationChangeListener}, in milliseconds. */
export interface ChangeListenerTiming {
  /** How long opening the connection may take. */
  connectTimeoutMs: number;
  /** Wait before the first reconnection attempt; it doubles for each further attempt. */
  retryBaseDelayMs: number;
  /** Largest wait between reconnection attempts. */
  retryMaxDelayMs: number;
  /** Time between heartbeats while the connection is idle. */
  heartbeatIntervalMs: number;
  /** How long a heartbeat, or any query of the listener, may take before the connection counts as lost. */
  heartbeatTimeoutMs: number;
}

/**
 * Timing of the service's listener. A connection that dies without a TCP
 * error is noticed by the next heartbeat, so integrations changed meanwhile
 * can be served from memory for up to about interval plus timeout (8 s).
 */
export const DEFAULT_CHANGE_LISTENER_TIMING: ChangeListenerTiming = {
  connectTimeoutMs: POSTGRES_CONNECT_TIMEOUT_MS,
  retryBaseDelayMs: 100,
  retryMaxDelayMs: 5_000,
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 3_000,
};

/** Failed connection attempts in a row that are all logged; after that, every tenth is. */
const LOGGED_ATTEMPTS = 3;

/** Receiver of the changes a listener reports, usually an integration cache. */
export interface IntegrationChangeSubscriber {
  /** The integration with this id was written or deleted by some process. */
  invalidate(id: string): void;
  /** Any integration may have changed (a TRUNCATE, or a notification this version cannot read). */
  clear(): void;
  /** Notifications may be missed from now on, until {@link resume}. */
  suspend(): void;
  /** Notifications arrive again; any change before this call may have been missed. */
  resume(): void;
}

/** `connecting` until the first LISTEN succeeds, `reconnecting` after a loss, `closed` after close. */
export type ChangeListenerState = "connecting" | "listening" | "reconnecting" | "closed";

/** Database, schema and subscriber of an {@link IntegrationChangeListener}. */
export interface IntegrationChangeListenerOptions {
  /** `postgres://` URL of the store's database. */
  databaseUrl: string;
  /** Schema of the store's tables, which names the channel. */
  schema: string;
  /** The database for logs, without a password. */
  description: string;
  subscriber: IntegrationChangeSubscriber;
  logger: Logger;
  timing?: Partial<ChangeListenerTiming>;
}

/**
 * Keeps one dedicated PostgreSQL connection that LISTENs on the store's
 * change channel, and passes each change to its subscriber.
 *
 * The subscriber is suspended until the first LISTEN succeeds, and again
 * from the moment the connection is lost until a new connection LISTENs,
 * because notifications sent meanwhile are lost. Reconnection waits grow
 * from `retryBaseDelayMs` to `retryMaxDelayMs`, with jitter so that
 * replicas do not reconnect in step.
 *
 * Every `heartbeatIntervalMs` the listener sends a notification on its own
 * channel and waits for it to come back, which proves that the connection
 * is alive and still registered. A heartbeat that fails counts as a lost
 * connection.
 *
 * NOTE: behind a pooler in transaction mode (PgBouncer's `pool_mode =
 * transaction`), other clients share the server connection that ran LISTEN,
 * so changes can go unnoticed while the heartbeat still succeeds. The URL
 * must reach PostgreSQL directly or through a pooler in session mode.
 */
export class IntegrationChangeListener {
  readonly #options: IntegrationChangeListenerOptions;
  readonly #timing: ChangeListenerTiming;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #state: ChangeListenerState = "connecting";
  #backendPid: number | undefined;
  #client: pg.Client | undefined;
  #running: Promise<void> | undefined;
  /** The heartbeat waiting for its notification to come back. */
  #pendingPing: { nonce: string; arrived(): void } | undefined;

  constructor(options: IntegrationChangeListenerOptions) {
    this.#options = options;
    this.#timing = { ...DEFAULT_CHANGE_LISTENER_TIMING, ...options.timing };
    this.#log = options.logger.child({ database: options.description });
  }

  /** Current state; the subscriber is resumed exactly while it is `listening`. */
  get state(): ChangeListenerState {
    return this.#state;
  }

  /** Process id of the listening connection's server process while `listening`, for `pg_terminate_backend`. */
  get backendPid(): number | undefined {
    return this.#backendPid;
  }

  /** Connects and keeps listening in the background until {@link close}. */
  start(): void {
    this.#running ??= this.#run();
  }

  /** Stops listening and closes the connection; the subscriber stays suspended. */
  async close(): Promise<void> {
    if (this.#state === "closed") {
      return;
    }
    const wasListening = this.#state === "listening";
    this.#state = "closed";
    this.#stop.abort(new Error("the change listener was closed"));
    this.#options.subscriber.suspend();
    const ended = this.#client?.end().catch(() => undefined);
    // A client that is still connecting ends only when the server closes the
    // connection or the connect timeout passes, so the close does not wait for it.
    if (wasListening) {
      await ended;
    }
    await this.#running;
  }

  async #run(): Promise<void> {
    let failedAttempts = 0;
    let lostAt: number | undefined;

    while (!this.#stop.signal.aborted) {
      const client = await this.#newClient();
      if (this.#stop.signal.aborted) {
        return;
      }
      this.#client = client;
      const loss = new ConnectionLoss(client);
      let listening = false;
      let failure: unknown;
      try {
        const channel = await this.#listen(client);
        if (!this.#stop.signal.aborted) {
          listening = true;
          this.#resume(channel, failedAttempts, lostAt);
          failedAttempts = 0;
          lostAt = undefined;
          failure = await this.#watch(client, channel, loss);
        }
      } catch (error) {
        failure = error;
      }

      this.#backendPid = undefined;
      this.#options.subscriber.suspend();
      void client.end().catch(() => undefined);
      if (this.#stop.signal.aborted) {
        return;
      }

      this.#state = this.#state === "connecting" ? "connecting" : "reconnecting";
      failedAttempts = listening ? 0 : failedAttempts + 1;
      const delayMs = this.#retryDelayMs(failedAttempts);
      if (listening) {
        lostAt = Date.now();
        this.#log.warn(
          { err: summarizeDatabaseError(failure), retryInMs: delayMs },
          "lost the connection that listens for integration changes; sends read integrations from the database until it is back",
        );
      } else if (failedAttempts <= LOGGED_ATTEMPTS || failedAttempts % 10 === 0) {
        this.#log.warn(
          { err: summarizeDatabaseError(failure), attempt: failedAttempts, retryInMs: delayMs },
          "could not listen for integration changes; sends read integrations from the database until it can",
        );
      }
      await sleep(delayMs, undefined, { signal: this.#stop.signal }).catch(() => undefined);
    }
  }

  async #newClient(): Promise<pg.Client> {
    const { Client } = await loadPg();
    return new Client({
      connectionString: this.#options.databaseUrl,
      // Parameters in the URL take precedence over these.
      application_name: "smsgateway change listener",
      connectionTimeoutMillis: this.#timing.connectTimeoutMs,
      query_timeout: this.#timing.heartbeatTimeoutMs,
      keepAlive: true,
    });
  }

  /**
   * Connects, finds the channel of the schema and LISTENs on it; returns the
   * channel. Each step gives up when {@link close} is called, because a client
   * ended while it connects may never send the queries that come after.
   */
  async #listen(client: pg.Client): Promise<string> {
    await untilAborted(client.connect(), this.#stop.signal);
    const channelQuery = client.query<{ channel: string; pid: number }>(
      `select ${changeChannelSql("$1::text")} as channel, pg_backend_pid() as pid`,
      [this.#options.schema],
    );
    const { rows } = await untilAborted(channelQuery, this.#stop.signal);
    const { channel, pid } = rows[0]!;

    client.on("notification", (message) => {
      if (message.channel === channel) {
        this.#deliver(message.payload ?? "");
      }
    });
    await untilAborted(client.query(`listen ${client.escapeIdentifier(channel)}`), this.#stop.signal);
    this.#backendPid = pid;
    return channel;
  }

  #resume(channel: string, failedAttempts: number, lostAt: number | undefined): void {
    const wasReconnecting = this.#state === "reconnecting";
    this.#state = "listening";
    this.#options.subscriber.resume();
    const fields = { channel, backendPid: this.#backendPid, failedAttempts };
    if (wasReconnecting) {
      const downMs = lostAt === undefined ? undefined : Date.now() - lostAt;
      this.#log.info({ ...fields, downMs }, "listening for integration changes again; the integration cache restarts empty");
    } else {
      this.#log.info(fields, "listening for integration changes; integrations are cached in memory");
    }
  }

  #deliver(payload: string): void {
    const change = parseChange(payload);
    const { subscriber } = this.#options;
    if (change === undefined) {
      this.#log.warn({ payloadBytes: Buffer.byteLength(payload) }, "unreadable integration change notification; clearing the integration cache");
      subscriber.clear();
      return;
    }

    switch (change.op) {
      case "ping":
        if (change.nonce === this.#pendingPing?.nonce) {
          this.#pendingPing.arrived();
        }
        return;
      case "truncate":
        this.#log.info("integrations table truncated; clearing the integration cache");
        subscriber.clear();
        return;
      case "insert":
        // The cache never keeps a missing id, and the delete before any re-insert was notified.
        this.#log.debug({ integrationId: change.id }, "integration created");
        return;
      default:
        this.#log.debug({ integrationId: change.id, version: change.version, op: change.op }, "integration changed");
        subscriber.invalidate(change.id);
    }
  }

  /**
   * Sends heartbeats until the connection is lost or the listener closes.
   * Returns why the connection counts as lost, or undefined after close.
   */
  async #watch(client: pg.Client, channel: string, loss: ConnectionLoss): Promise<unknown> {
    for (;;) {
      const idle = await loss.wait(this.#timing.heartbeatIntervalMs, [this.#stop.signal]);
      if (idle.kind === "aborted") {
        return undefined;
      }
      if (idle.kind === "lost") {
        return idle.error;
      }

      const failure = await this.#heartbeat(client, channel, loss);
      if (failure !== undefined) {
        return this.#stop.signal.aborted ? undefined : failure;
      }
    }
  }

  /** Sends one heartbeat and waits for it; returns why it failed, or undefined. */
  async #heartbeat(client: pg.Client, channel: string, loss: ConnectionLoss): Promise<unknown> {
    const nonce = randomUUID();
    const arrival = new AbortController();
    this.#pendingPing = { nonce, arrived: () => arrival.abort("arrived") };
    try {
      await client.query("select pg_notify($1, $2)", [channel, pingPayload(nonce)]);
      // The notification can arrive before the query's own reply, and then the wait ends at once.
      const outcome = await loss.wait(this.#timing.heartbeatTimeoutMs, [arrival.signal, this.#stop.signal]);
      if (outcome.kind === "lost") {
        return outcome.error;
      }
      if (outcome.kind === "elapsed") {
        return new Error(`the heartbeat notification did not arrive within ${this.#timing.heartbeatTimeoutMs} ms`);
      }
      return undefined;
    } catch (error) {
      return error;
    } finally {
      this.#pendingPing = undefined;
    }
  }

  /** Returns the wait before the next attempt: exponential, with the upper half jittered. */
  #retryDelayMs(failedAttempts: number): number {
    const { retryBaseDelayMs, retryMaxDelayMs } = this.#timing;
    const ceiling = Math.min(retryMaxDelayMs, retryBaseDelayMs * 2 ** Math.max(0, failedAttempts - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }
}
