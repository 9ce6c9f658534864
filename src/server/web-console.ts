import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Logger } from "pino";
import type { HttpRoute } from "./http-routes.js";
import type { RequestHandler } from "./one-port-server.js";
import { staticAssetRoutes, unavailableRoutes, type WebAsset } from "./static-assets.js";

/**
 * The console's sources: `web/` at the repository root, looked up from this
 * module's folder upwards, so that both `src/server/` and the bundle in
 * `dist/` find it.
 */
export const WEB_SOURCE_DIR = findWebSourceDir(path.dirname(fileURLToPath(import.meta.url)));

/** Returns the nearest `web/` folder that contains the console's `main.ts`, or the repository root's when none does. */
function findWebSourceDir(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "web");
    if (existsSync(path.join(candidate, "main.ts"))) {
      return `${candidate}${path.sep}`;
    }
    if (path.dirname(dir) === dir) {
      // Not found: the build from this path fails, and the console routes return 503 with the reason.
      return fileURLToPath(new URL("../../web/", import.meta.url));
    }
  }
}

/** The files the console consists of, by URL path; `built` ones come out of esbuild, the others are read as they are. */
const CONSOLE_FILES = [
  { path: "/", source: "index.html", contentType: "text/html; charset=utf-8" },
  { path: "/console.js", built: "console.js", contentType: "text/javascript; charset=utf-8" },
  { path: "/console.css", built: "console.css", contentType: "text/css; charset=utf-8" },
  { path: "/favicon.svg", source: "favicon.svg", contentType: "image/svg+xml" },
] as const;

/**
 * Bundles the console into memory: `main.ts` with its imports (the
 * generated API clients, Connect and protobuf-es) into one minified
 * `console.js`, and `console.css`. Building at start-up means a fresh clone
 * serves the console after `npm ci` with no build step, and the bundle
 * always matches the sources and `gen/` it runs with.
 */
export async function buildWebConsole(sourceDir: string = WEB_SOURCE_DIR): Promise<WebAsset[]> {
  const result = await build({
    absWorkingDir: sourceDir,
    entryPoints: [
      { in: "main.ts", out: "console" },
      { in: "console.css", out: "console" },
    ],
    // Nothing is written: with `write: false` the output stays in memory.
    outdir: "out",
    write: false,
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    charset: "utf8",
    tsconfig: path.join(sourceDir, "tsconfig.json"),
    logLevel: "silent",
  });
  const outputs = new Map(result.outputFiles.map((file) => [path.basename(file.path), Buffer.from(file.contents)]));

  return Promise.all(
    CONSOLE_FILES.map(async (file) => {
      const body = "built" in file ? outputs.get(file.built) : await readFile(path.join(sourceDir, file.source));
      if (body === undefined) {
        throw new Error(`esbuild produced no ${file.path}`);
      }
      return { path: file.path, contentType: file.contentType, body };
    }),
  );
}

/** Builds by source folder, so services started in one process (as tests do) share one build. */
const builds = new Map<string, Promise<WebAsset[]>>();

/**
 * Returns the console's routes and starts building it, once per process and
 * source folder. The build runs in the background, so the API is served
 * without waiting for it, and a console request that arrives first waits.
 * A failed build does not stop the service, because the API works without
 * the console: the error is logged and the console's paths respond with 503.
 */
export function webConsoleRoutes(logger: Logger, sourceDir: string = WEB_SOURCE_DIR): HttpRoute[] {
  const handlers = loadConsole(logger, sourceDir).then((routes) => new Map(routes.map((route) => [route.path, route.handler])));

  return CONSOLE_FILES.map(({ path }) => ({
    path,
    handler: (request, response) => {
      void handlers.then((byPath) => {
        // Both outcomes of loadConsole have a route for every path of CONSOLE_FILES.
        const handler = byPath.get(path) as RequestHandler;
        handler(request, response);
      });
    },
  }));
}

/** Builds the console and returns its routes: the assets, or 503 responses when the build failed. Never rejects. */
async function loadConsole(logger: Logger, sourceDir: string): Promise<HttpRoute[]> {
  const started = performance.now();
  let pending = builds.get(sourceDir);
  if (pending === undefined) {
    pending = buildWebConsole(sourceDir);
    builds.set(sourceDir, pending);
  }

  try {
    const assets = await pending;
    const bytes = assets.reduce((total, asset) => total + asset.body.length, 0);
    logger.debug({ durationMs: Math.round(performance.now() - started), bytes }, "web console built");
    return staticAssetRoutes(assets);
  } catch (error) {
    logger.error({ err: error, sourceDir }, "web console build failed; its paths respond with 503 until a restart");
    return unavailableRoutes(
      CONSOLE_FILES.map((file) => file.path),
      "The web console is unavailable because its build failed at start-up; the service log has the error. The API works.",
    );
  }
}
