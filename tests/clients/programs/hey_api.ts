// The round trip through @hey-api/openapi-ts's SDK, as a TypeScript app would
// write it. Run by tests/clients/test_generated_clients.py.
import {
  batchTasks,
  completeTask,
  createTask,
  deleteTask,
  getTask,
  listChanges,
  listTasks,
  replaceTask,
  type TaskOut,
  updateTask,
} from "../generated/hey-api";
import { type Client, createClient } from "../generated/hey-api/client";

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

/** Every task of a listing sorted by title, page after page. */
async function* allTasks(client: Client, limit: number): AsyncGenerator<TaskOut> {
  let cursor: string | undefined;
  do {
    const { data, error, response } = await listTasks({
      client,
      path: { user_id: "me" },
      query: { limit, sort: "title", cursor },
    });
    if (error !== undefined) throw new Error(`${error.type}: ${error.detail}`);
    yield* data;
    cursor = nextCursor(response.headers.get("Link"));
  } while (cursor !== undefined);
}

function client(token: string): Client {
  return createClient({ baseUrl: env("TASKVAULT_URL"), headers: { Authorization: `Bearer ${token}` } });
}

async function main(): Promise<void> {
  const alice = client(env("ALICE_TOKEN"));
  const bob = client(env("BOB_TOKEN"));
  const me = { user_id: "me" };

  const created = await createTask({ client: alice, path: me, body: { title: "Write the report", priority: "high" } });
  check(created.response.status === 201 && created.data !== undefined, "create");
  const task = created.data;
  check(task.completed === false && task.priority === "high", "create: defaults and fields");
  check(created.response.headers.get("Location")?.endsWith(`/tasks/${task.id}`) === true, "create: Location");
  const etag = created.response.headers.get("ETag");
  check(etag !== null, "create: ETag");

  for (const title of ["one", "two", "three", "four"]) {
    const more = await createTask({ client: alice, path: me, body: { title } });
    check(more.data !== undefined, `create ${title}`);
  }
  const high = await listTasks({ client: alice, path: me, query: { priority: "high", status: "pending" } });
  check(high.data?.length === 1 && high.data[0]?.id === task.id, "filter");

  const seen: string[] = [];
  for await (const each of allTasks(alice, 2)) seen.push(each.title);
  check(seen.join(",") === "Write the report,four,one,three,two", "Link pages");

  const path = { user_id: "me", task_id: task.id };
  const fresh = await getTask({ client: alice, path, headers: { "If-None-Match": etag } });
  check(fresh.response.status === 304, "ETag: 304");

  const toggled = await completeTask({ client: alice, path });
  check(toggled.data?.completed === true && toggled.data.version === 2, "toggle without a body");
  const set = await completeTask({ client: alice, path, body: { completed: false } });
  check(set.data?.completed === false && set.data.version === 3, "toggle with a body");

  const stale = await replaceTask({ client: alice, path, headers: { "If-Match": etag }, body: { title: "Stale" } });
  check(stale.response.status === 412 && stale.error?.type === "/problems/precondition-failed", "stale If-Match: 412");

  const replaced = await replaceTask({
    client: alice,
    path,
    headers: { "If-Match": set.response.headers.get("ETag") ?? "" },
    body: { title: "Rewritten", description: "in full" },
  });
  check(replaced.data?.title === "Rewritten" && replaced.data.priority === "medium", "PUT");

  const patched = await updateTask({ client: alice, path, body: { due_at: "2026-12-01T17:00:00Z", description: null } });
  check(patched.data?.due_at === "2026-12-01T17:00:00Z" && patched.data.description === null, "PATCH");

  const foreign = await getTask({ client: bob, path });
  check(foreign.response.status === 404 && foreign.error?.type === "/problems/not-found", "bob: 404");
  const forbidden = await listTasks({ client: bob, path: { user_id: "alice" } });
  check(forbidden.response.status === 403 && forbidden.error?.type === "/problems/forbidden", "bob: 403");

  const first = await listChanges({ client: alice, path: me });
  check(first.data !== undefined && !first.data.has_more && first.data.changes.length === 5, "feed: first sync");
  const deleted = await deleteTask({ client: alice, path });
  check(deleted.response.status === 204, "DELETE");
  const polled = await listChanges({ client: alice, path: me, query: { since: first.data.next } });
  const change = polled.data?.changes[0];
  check(change?.type === "delete" && change.id === task.id && polled.data?.changes.length === 1, "feed: poll");

  const batch = await batchTasks({
    client: alice,
    path: me,
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
  check(batch.data?.results[0]?.problem?.type === "/problems/failed-dependency", "batch: failed dependency");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
