/**
 * The benchmark's SMS gateway: a lean HTTP/1.1 server on loopback that
 * reads each POST body and replies `{"data":{"id":"...","date":"..."}}`,
 * with no logging. `GET /count` returns how many messages it has accepted,
 * so the benchmark can check that every measured call reached it.
 *
 *   node --import tsx bench/gateway.ts PORT
 */
import http from "node:http";

const port = Number(process.argv[2] ?? "0");
let accepted = 0;

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/count") {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ accepted }));
    return;
  }

  request.on("data", () => undefined);
  request.on("end", () => {
    accepted++;
    const body = `{"data":{"id":"bench-${accepted}","date":"${new Date().toISOString()}"}}`;
    response.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    response.end(body);
  });
});
server.keepAliveTimeout = 60_000;

server.listen(port, "127.0.0.1", () => {
  const address = server.address();
  const boundPort = typeof address === "object" && address !== null ? address.port : port;
  process.stdout.write(`${JSON.stringify({ ready: true, port: boundPort })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
