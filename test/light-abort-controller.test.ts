import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { request } from "undici";
import { afterEach, describe, expect, test, vi } from "vitest";
import { LightAbortController } from "../src/light-abort-controller.js";
import { ScriptedGateway } from "./helpers/scripted-gateway.js";

describe("LightAbortController", () => {
  test("abort runs each listener once", () => {
    const controller = new LightAbortController();
    const { signal } = controller;
    const listener = vi.fn();
    const once = vi.fn();
    const onabort = vi.fn();
    signal.addEventListener("abort", listener);
    signal.addEventListener("abort", once, { once: true });
    signal.onabort = onabort;
    expect(signal.aborted).toBe(false);
    expect(() => signal.throwIfAborted()).not.toThrow();

    const reason = new Error("stop");
    controller.abort(reason);
    controller.abort(new Error("again"));

    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe(reason);
    expect(() => signal.throwIfAborted()).toThrow(reason);
    for (const handler of [listener, once, onabort]) {
      expect(handler).toHaveBeenCalledTimes(1);
      expect((handler.mock.calls[0]![0] as Event).type).toBe("abort");
    }
  });

  test("default reason is an AbortError", () => {
    const controller = new LightAbortController();

    controller.abort();

    expect(controller.signal.reason).toBeInstanceOf(DOMException);
    expect((controller.signal.reason as DOMException).name).toBe("AbortError");
  });

  test("removed listener is not called", () => {
    const controller = new LightAbortController();
    const listener = vi.fn();
    controller.signal.addEventListener("abort", listener);

    controller.signal.removeEventListener("abort", listener);
    controller.abort();

    expect(listener).not.toHaveBeenCalled();
  });

  // Node's own signal runs `onabort` as a listener, at the place where it was first set.
  test("onabort runs in set order", () => {
    const controller = new LightAbortController();
    const order: string[] = [];
    controller.signal.addEventListener("abort", () => order.push("before"));
    controller.signal.onabort = () => order.push("onabort");
    controller.signal.addEventListener("abort", () => order.push("after"));

    controller.abort();

    expect(order).toEqual(["before", "onabort", "after"]);
  });

  // grpc-js's "cancelled" event and the shutdown's loop over the calls call abort, so an error
  // in a handler must neither skip the other listeners nor come out of abort.
  test("failing onabort stops nothing", () => {
    const controller = new LightAbortController();
    const listener = vi.fn();
    const failure = new Error("handler failed");
    controller.signal.onabort = () => {
      throw failure;
    };
    controller.signal.addEventListener("abort", listener);
    const reported = new Promise<unknown>((resolve) => process.once("uncaughtException", resolve));

    expect(() => controller.abort()).not.toThrow();

    expect(listener).toHaveBeenCalledTimes(1);
    return expect(reported).resolves.toBe(failure);
  });

  test("null onabort is not called", () => {
    const controller = new LightAbortController();
    const onabort = vi.fn();
    controller.signal.onabort = onabort;

    controller.signal.onabort = null;
    controller.abort();

    expect(onabort).not.toHaveBeenCalled();
    expect(controller.signal.onabort).toBeNull();
  });

  test("setMaxListeners accepts the signal", () => {
    const controller = new LightAbortController();

    expect(() => setMaxListeners(0, controller.signal)).not.toThrow();
  });

  // Node 20 gives each native AbortSignal a hidden class of its own, which
  // keeps it and its listeners alive through young-generation collections.
  // %HaveSameMap is V8's own check of the hidden class.
  test("signals share one hidden class", () => {
    setFlagsFromString("--allow-natives-syntax");
    const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;
    const signals = Array.from({ length: 6 }, () => new LightAbortController().signal);
    signals.at(-1)!.addEventListener("abort", () => undefined);

    for (const signal of signals.slice(1)) {
      expect(haveSameMap(signals[0]!, signal)).toBe(true);
    }
  });

  test("abort ends a Node timer", async () => {
    const controller = new LightAbortController();
    const reason = new Error("stop");
    const sleeping = sleep(60_000, undefined, { signal: controller.signal });

    controller.abort(reason);

    await expect(sleeping).rejects.toMatchObject({ name: "AbortError", cause: reason });
  });

  describe("with undici", () => {
    let gateway: ScriptedGateway | undefined;

    afterEach(async () => {
      await gateway?.close();
    });

    test("abort ends a request and its connection", async () => {
      gateway = await ScriptedGateway.start();
      gateway.on("/sms", { hang: true });
      const controller = new LightAbortController();
      const reason = new Error("stop");
      const sending = request(gateway.url("/sms"), { method: "POST", body: "{}", signal: controller.signal });
      await vi.waitFor(() => expect(gateway!.requests).toHaveLength(1));

      controller.abort(reason);

      await expect(sending).rejects.toBe(reason);
      await vi.waitFor(() => expect(gateway!.openConnections).toBe(0));
    });
  });
});
