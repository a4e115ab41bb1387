// The round trip through openapi-typescript's types and openapi-fetch, as a
// TypeScript app would write it. Run by tests/clients/test_generated_clients.py.
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "../generated/openapi-typescript/schema";

type Task = components["schemas"]["TaskOut"];
type ListQuery = NonNullable<paths["/api/{user_id}/tasks"]["get"]["parameters"]["query"]>;

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`failed: ${what}`);
  console.log(`ok ${what}`);
}

/** The cursor of the `Link` header's rel="next" page; undefined on the last page. */
function nextCursor(link: string | null): string | undefined {
  const next = link?.split(",").find((part) => /;\s*rel="?next"?/.test(part));
  const url = next?.match(/<([^>]*)>/)?.[1];
  return url === undefined ? undefined : new URL(url).searchParams.get("cursor") ?? undefined;
}

/** Every task of a listing, page after page. */
async function* allTasks(client: Client<paths>, query: ListQuery = {}): AsyncGenerator<Task> {
  let cursor: string | undefined;
  do {
    const { data, error, response } = await client.GET("/api/{user_id}/tasks", {
      params: { path: { user_id: "me" }, query: { ...query, cursor } },
    });
    if (error !== undefined) throw new Error(`${error.type}: ${error.detail}`);
    yield* data;
    cursor = nextCursor(response.headers.get("Link"));
  } while (cursor !== undefined);
}

function client(token: string): Client<paths> {
  return createClient<paths>({ baseUrl: env("TASKVAULT_URL"), headers: { Authorization: `Bearer ${token}` } });
}

async function main(): Promise<void> {
  const alice = client(env("ALICE_TOKEN"));
  const bob = client(env("BOB_TOKEN"));
  const me = { user_id: "me" };

  const created = await alice.POST("/api/{user_id}/tasks", {
    params: { path: me },
    body: { title: "Write the report", priority: "high" },
  });
  check(created.response.status === 201 && created.data !== undefined, "create");
  const task = created.data;
  check(task.completed === false && task.priority === "high", "create: defaults and fields");
  check(created.response.headers.get("Location")?.endsWith(`/tasks/${task.id}`) === true, "create: Location");
  const etag = created.response.headers.get("ETag");
  check(etag !== null, "create: ETag");

  for (const title of ["one", "two", "three", "four"]) {
    const more = await alice.POST("/api/{user_id}/tasks", { params: { path: me }, body: { title } });
    check(more.data !== undefined, `create ${title}`);
  }
  const high = await alice.GET("/api/{user_id}/tasks", {
    params: { path: me, query: { priority: "high", status: "pending" } },
  });
  check(high.data?.length === 1 && high.data[0]?.id === task.id, "filter");

  const seen: string[] = [];
  for await (const each of allTasks(alice, { limit: 2, sort: "title" })) seen.push(each.title);
  check(seen.join(",") === "Write the report,four,one,three,two", "Link pages");

  const path = { path: { user_id: "me", task_id: task.id } };
  const fresh = await alice.GET("/api/{user_id}/tasks/{task_id}", {
    params: { ...path, header: { "If-None-Match": etag } },
  });
  check(fresh.response.status === 304, "ETag: 304");

  const toggled = await alice.PATCH("/api/{user_id}/tasks/{task_id}/complete", { params: path });
  check(toggled.data?.completed === true && toggled.data.version === 2, "toggle without a body");
  const set = await alice.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
    params: path,
    body: { completed: false },
  });
  check(set.data?.completed === false && set.data.version === 3, "toggle with a body");

  const stale = await alice.PUT("/api/{user_id}/tasks/{task_id}", {
    params: { ...path, header: { "If-Match": etag } },
    body: { title: "Stale" },
  });
  check(stale.response.status === 412 && stale.error?.type === "/problems/precondition-failed", "stale If-Match: 412");

  const replaced = await alice.PUT("/api/{user_id}/tasks/{task_id}", {
    params: { ...path, header: { "If-Match": set.response.headers.get("ETag") ?? "" } },
    body: { title: "Rewritten", description: "in full" },
  });
  check(replaced.data?.title === "Rewritten" && replaced.data.priority === "medium", "PUT");

  const patched = await alice.PATCH("/api/{user_id}/tasks/{task_id}", {
    params: path,
    body: { due_at: "2026-12-01T17:00:00Z", description: null },
  });
  check(patched.data?.due_at === "2026-12-01T17:00:00Z" && patched.data.description === null, "PATCH");

  const foreign = await bob.GET("/api/{user_id}/tasks/{task_id}", { params: path });
  check(foreign.response.status === 404 && foreign.error?.type === "/problems/not-found", "bob: 404");
  const forbidden = await bob.GET("/api/{user_id}/tasks", { params: { path: { user_id: "alice" } } });
  check(forbidden.response.status === 403 && forbidden.error?.type === "/problems/forbidden", "bob: 403");

  const first = await alice.GET("/api/{user_id}/tasks/changes", { params: { path: me } });
  check(first.data !== undefined && !first.data.has_more && first.data.changes.length === 5, "feed: first sync");
  const deleted = await alice.DELETE("/api/{user_id}/tasks/{task_id}", { params: path });
  check(deleted.response.status === 204, "DELETE");
  const polled = await alice.GET("/api/{user_id}/tasks/changes", {
    params: { path: me, query: { since: first.data.next } },
  });
  const change = polled.data?.changes[0];
  check(change?.type === "delete" && change.id === task.id && polled.data?.changes.length === 1, "feed: poll");

  const batch = await alice.POST("/api/{user_id}/tasks/batch", {
    params: { path: me },
    body: {
      atomic: true,
      operations: [
        { op: "create", task: { title: "Batched" } },
        { op: "complete", id: task.id },
      ],
    },
  });
  const statuses = batch.data?.results.map((result) => result.status);
  check(statuses?.join(",") === "424,404", "batch: atomic");
  const dependent = batch.data?.results[0]?.problem?.type;
  check(dependent === "/problems/failed-dependency", "batch: failed dependency");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
