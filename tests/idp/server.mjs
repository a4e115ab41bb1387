// Better Auth on loopback: the real identity provider of
// tests/integration/test_better_auth.py.
//
// Email and password sign-up, the `jwt` plugin signing with ES256 or RS256
// (python-jose cannot verify Better Auth's default, EdDSA), Better Auth's
// in-memory database (the server lives for one test; a SQLite driver would
// be compiled from source at every `npm ci`, minutes where no prebuilt binary
// can be downloaded), and a plain node:http server that forwards every
// request to `auth.handler`.
//
// Environment:
//   IDP_PORT            port on 127.0.0.1 (required: the base URL names it)
//   IDP_JWT_ALG         ES256 (default) or RS256
//   BETTER_AUTH_SECRET  at least 32 characters (required)
//
// Prints one line `ready <base URL>` on stdout once it listens; stops on
// SIGTERM or SIGINT.

import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { jwt } from "better-auth/plugins/jwt";

const HOST = "127.0.0.1";
const MAX_BODY_BYTES = 64 * 1024;
const ALGORITHMS = new Set(["ES256", "RS256"]);

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`server.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(required("IDP_PORT"));
const secret = required("BETTER_AUTH_SECRET");
const alg = process.env.IDP_JWT_ALG ?? "ES256";
if (!ALGORITHMS.has(alg)) {
  console.error(`server.mjs: IDP_JWT_ALG must be one of ${[...ALGORITHMS].join(", ")}`);
  process.exit(2);
}
const baseURL = `http://${HOST}:${port}`;

const auth = betterAuth({
  baseURL,
  secret,
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  trustedOrigins: [baseURL],
  emailAndPassword: { enabled: true },
  telemetry: { enabled: false },
  plugins: [jwt({ jwks: { keyPairConfig: { alg } } })],
});

async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error("body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function forward(request, response) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined) headers.append(name, item);
    }
  }
  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  const answer = await auth.handler(
    new Request(new URL(request.url, baseURL), {
      method: request.method,
      headers,
      body: hasBody ? await readBody(request) : undefined,
    }),
  );
  response.statusCode = answer.status;
  answer.headers.forEach((value, name) => {
    if (name !== "set-cookie") response.setHeader(name, value);
  });
  const cookies = answer.headers.getSetCookie();
  if (cookies.length > 0) response.setHeader("set-cookie", cookies);
  response.end(Buffer.from(await answer.arrayBuffer()));
}

const server = createServer((request, response) => {
  forward(request, response).catch((error) => {
    console.error(`server.mjs: ${request.method} ${request.url}: ${error.message}`);
    if (!response.headersSent) response.statusCode = 500;
    response.end();
  });
});
server.requestTimeout = 10_000;

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

server.listen(port, HOST, () => {
  console.log(`ready ${baseURL}`);
});
