import { assert, assertEquals, assertRejects, assertThrows } from "@rxfb/assert";
import type { Subscription } from "rxjs";
import { type Xenstore, XenstoreError } from "../sources/platform.ts";
import {
  SimXenstoreDaemon,
  TRANSACTION_TRIES,
  XENSTORE_ABS_PATH_MAX,
} from "../sources/sim/xenstore.ts";

/** Lets queued microtasks (watch events) run. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Matches a rejection/throw by xenstore errno. */
const errno = (name: string) => (e: unknown) => e instanceof XenstoreError && e.errno === name;

/** Subscribes to a watch and records its events. */
function record(
  xs: Xenstore,
  path: string,
): { events: string[]; sub: Subscription; done: () => boolean } {
  const events: string[] = [];
  let completed = false;
  const sub = xs.watch(path).subscribe({
    next: (p) => events.push(p),
    complete: () => completed = true,
  });
  return { events, sub, done: () => completed };
}

function setup() {
  const daemon = new SimXenstoreDaemon();
  return { daemon, dom0: daemon.connect(0), domU: daemon.connect(3) };
}

Deno.test("sim xenstore: write, read, directory, mkdir and rm", async () => {
  const { daemon, dom0 } = setup();
  assertEquals(await dom0.read("/a/b/c"), undefined);
  assertEquals(await dom0.directory("/a"), []);

  await dom0.write("/a/b/c", "1");
  assertEquals(await dom0.read("/a/b/c"), "1");
  assertEquals(await dom0.read("/a/b"), "", "write creates missing parents, empty");
  assertEquals(await dom0.directory("/"), ["a"]);

  await dom0.write("/a/z", "z");
  await dom0.write("/a/m", "m");
  assertEquals(await dom0.directory("/a"), ["b", "z", "m"], "children in creation order");

  await dom0.mkdir("/a/z");
  assertEquals(await dom0.read("/a/z"), "z", "mkdir of an existing node keeps it");
  await dom0.mkdir("/e/f");
  assertEquals(await dom0.read("/e/f"), "");

  await dom0.rm("/a/b");
  assertEquals(await dom0.read("/a/b/c"), undefined);
  assertEquals(await dom0.read("/a/b"), undefined);
  assertEquals(await dom0.directory("/a"), ["z", "m"]);

  await dom0.rm("/a/nothing"); // missing node, existing parent: fine
  await assertRejects(dom0.rm("/nothing/here"), errno("ENOENT"));
  await assertRejects(dom0.rm("/"), errno("EINVAL"));

  await dom0.write("/a/z", "zz");
  assertEquals(daemon.dump("/a"), "/a = \n/a/z = zz\n/a/m = m");
  assertEquals(daemon.dump("/a/m", { perms: true }), "/a/m = m  (n0)");
  assertEquals(daemon.dump("/missing"), "");
});

Deno.test("sim xenstore: invalid paths are EINVAL", async () => {
  const { daemon, dom0 } = setup();
  const bad = [
    "",
    "a/b",
    "/a/",
    "/a//b",
    "//",
    "/a b",
    "/a.b",
    "/ä",
    "/a\0",
    "/" + "x".repeat(XENSTORE_ABS_PATH_MAX),
  ];
  for (const p of bad) {
    await assertRejects(dom0.write(p, "v"), errno("EINVAL"), JSON.stringify(p));
    await assertRejects(dom0.read(p), errno("EINVAL"), JSON.stringify(p));
    await assertRejects(dom0.directory(p), errno("EINVAL"), JSON.stringify(p));
    await assertRejects(dom0.rm(p), errno("EINVAL"), JSON.stringify(p));
    await assertRejects(dom0.mkdir(p), errno("EINVAL"), JSON.stringify(p));
    await assertRejects(dom0.getPerms(p), errno("EINVAL"), JSON.stringify(p));
    assertThrows(() => daemon.read(0, 0, p), errno("EINVAL"));
  }
  const longest = "/" + "x".repeat(XENSTORE_ABS_PATH_MAX - 1);
  await dom0.write(longest, "ok");
  assertEquals(await dom0.read(longest), "ok");
  await dom0.write("/A-z_0@9", "chars");
  assertEquals(await dom0.read("/A-z_0@9"), "chars");

  let error: unknown;
  dom0.watch("relative").subscribe({ error: (e) => error = e });
  assert(errno("EINVAL")(error));
  assertEquals(daemon.watchCount, 0);
});

Deno.test("sim xenstore: new nodes inherit the parent's perms, an unprivileged creator owns them", async () => {
  const { dom0, domU } = setup();
  await dom0.write("/local/domain/3", "");
  await dom0.setPerms("/local/domain/3", [{ domid: 3, perm: "n" }, { domid: 5, perm: "r" }]);

  await dom0.write("/local/domain/3/by-dom0/x", "1");
  assertEquals(await dom0.getPerms("/local/domain/3/by-dom0"), [{ domid: 3, perm: "n" }, {
    domid: 5,
    perm: "r",
  }]);
  assertEquals(await dom0.getPerms("/local/domain/3/by-dom0/x"), [{ domid: 3, perm: "n" }, {
    domid: 5,
    perm: "r",
  }]);

  await dom0.setPerms("/local/domain/3", [{ domid: 0, perm: "r" }, { domid: 3, perm: "b" }]);
  await domU.write("/local/domain/3/device/vfb/0/state", "1");
  for (const p of ["/local/domain/3/device", "/local/domain/3/device/vfb/0/state"]) {
    assertEquals(await dom0.getPerms(p), [{ domid: 3, perm: "r" }, { domid: 3, perm: "b" }], p);
  }
  await domU.mkdir("/local/domain/3/data");
  assertEquals(await dom0.getPerms("/local/domain/3/data"), [{ domid: 3, perm: "r" }, {
    domid: 3,
    perm: "b",
  }]);
});

Deno.test("sim xenstore: permissions between dom0 and a domU", async () => {
  const { daemon, dom0, domU } = setup();
  await dom0.write("/secret/key", "s");
  // Everything inherits the root's [n0]: domU may neither read nor write.
  await assertRejects(domU.read("/secret/key"), errno("EACCES"));
  await assertRejects(domU.write("/secret/key", "x"), errno("EACCES"));
  await assertRejects(
    domU.write("/mine", "x"),
    errno("EACCES"),
    "creating needs write on the parent",
  );
  await assertRejects(domU.directory("/secret"), errno("EACCES"));
  await assertRejects(domU.getPerms("/secret"), errno("EACCES"));
  await assertRejects(domU.rm("/secret/key"), errno("EACCES"));
  await assertRejects(
    domU.read("/secret/missing"),
    errno("EACCES"),
    "a missing node under an unreadable one",
  );
  await assertRejects(domU.directory("/secret/missing"), errno("EACCES"));
  assertThrows(() => daemon.read(3, 0, "/secret/missing"), errno("EACCES"));

  await dom0.setPerms("/secret/key", [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
  assertEquals(await domU.read("/secret/key"), "s");
  await assertRejects(domU.write("/secret/key", "x"), errno("EACCES"));
  assertEquals(await daemon.connect(4).read("/secret/key").catch((e) => e.errno), "EACCES");

  await dom0.setPerms("/secret/key", [{ domid: 0, perm: "r" }]);
  assertEquals(
    await daemon.connect(4).read("/secret/key"),
    "s",
    "default letter for unlisted domains",
  );
  await assertRejects(domU.write("/secret/key", "x"), errno("EACCES"));

  await dom0.setPerms("/secret/key", [{ domid: 0, perm: "r" }, { domid: 3, perm: "w" }]);
  await assertRejects(domU.read("/secret/key"), errno("EACCES"), "w alone does not read");
  await domU.write("/secret/key", "from3");
  assertEquals(await dom0.read("/secret/key"), "from3");

  await dom0.setPerms("/secret/key", [{ domid: 0, perm: "n" }, { domid: 3, perm: "b" }]);
  assertEquals(await domU.read("/secret/key"), "from3");
  await domU.write("/secret/key", "b");
  await domU.rm("/secret/key");
  assertEquals(await dom0.read("/secret/key"), undefined);

  await dom0.setPerms("/secret", [{ domid: 0, perm: "r" }]);
  assertEquals(await domU.read("/secret/missing"), undefined, "readable parent: plain ENOENT");
  assertEquals(await domU.directory("/secret/missing"), []);

  await dom0.write("/owned", "o");
  await dom0.setPerms("/owned", [{ domid: 3, perm: "n" }]);
  assertEquals(await domU.read("/owned"), "o", "the owner may do anything");
  await domU.write("/owned/child", "c");
  await domU.setPerms("/owned", [{ domid: 3, perm: "r" }]);
  await domU.rm("/owned");
  assertEquals(await dom0.read("/owned"), undefined);
});

Deno.test("sim xenstore: setPerms only by the owner or dom0; an unprivileged owner keeps ownership", async () => {
  const { dom0, domU } = setup();
  await dom0.write("/n", "");
  await dom0.setPerms("/n", [{ domid: 0, perm: "b" }]);
  await assertRejects(
    domU.setPerms("/n", [{ domid: 3, perm: "b" }]),
    errno("EACCES"),
    "b is not ownership",
  );

  await dom0.setPerms("/n", [{ domid: 3, perm: "n" }]);
  await domU.setPerms("/n", [{ domid: 3, perm: "r" }, { domid: 7, perm: "b" }]);
  assertEquals(await dom0.getPerms("/n"), [{ domid: 3, perm: "r" }, { domid: 7, perm: "b" }]);
  await assertRejects(domU.setPerms("/n", [{ domid: 7, perm: "n" }]), errno("EPERM"));
  await dom0.setPerms("/n", [{ domid: 7, perm: "n" }]);
  assertEquals(await dom0.getPerms("/n"), [{ domid: 7, perm: "n" }]);

  await assertRejects(dom0.setPerms("/n", []), errno("EINVAL"));
  await assertRejects(dom0.setPerms("/n", [{ domid: 0, perm: "x" as "n" }]), errno("EINVAL"));
  await assertRejects(dom0.setPerms("/n", [{ domid: -1, perm: "n" }]), errno("EINVAL"));
  await assertRejects(dom0.setPerms("/missing", [{ domid: 0, perm: "n" }]), errno("ENOENT"));
});

Deno.test("sim xenstore: a new watch fires once with its path, asynchronously", async () => {
  const { daemon, dom0 } = setup();
  const w = record(dom0, "/not/there/yet");
  assertEquals(w.events, [], "nothing synchronously on subscribe");
  assertEquals(daemon.watchCount, 1);
  await settle();
  assertEquals(w.events, ["/not/there/yet"]);
  await settle();
  assertEquals(w.events, ["/not/there/yet"], "only once");
  w.sub.unsubscribe();
});

Deno.test("sim xenstore: a watch fires for changes at and below its path", async () => {
  const { dom0 } = setup();
  await dom0.write("/ab", "");
  const w = record(dom0, "/a");
  const root = record(dom0, "/");
  await settle();
  w.events.length = 0;
  root.events.length = 0;

  await dom0.write("/a", "1");
  await dom0.write("/a/b/c", "2"); // creates /a/b: one event, for the written node
  await dom0.write("/ab", "not below /a");
  await dom0.write("/b/a", "elsewhere");
  await dom0.mkdir("/a/d");
  await dom0.mkdir("/a/d"); // exists: no event
  await dom0.setPerms("/a/d", [{ domid: 0, perm: "r" }]);
  await dom0.write("/a/d", "same"); // every write fires, changed or not
  await dom0.write("/a/d", "same");
  await dom0.rm("/a/b");
  await dom0.rm("/a/missing"); // nothing removed: no event
  await settle();
  assertEquals(w.events, ["/a", "/a/b/c", "/a/d", "/a/d", "/a/d", "/a/d", "/a/b"]);
  assertEquals(root.events, [
    "/a",
    "/a/b/c",
    "/ab",
    "/b/a",
    "/a/d",
    "/a/d",
    "/a/d",
    "/a/d",
    "/a/b",
  ]);
  w.sub.unsubscribe();
  root.sub.unsubscribe();
});

Deno.test("sim xenstore: removing an ancestor fires the watches below it with the watched path", async () => {
  const { dom0 } = setup();
  await dom0.write("/fe/device/vfb/0/state", "4");
  const state = record(dom0, "/fe/device/vfb/0/state");
  const never = record(dom0, "/fe/device/vkbd/0"); // never existed: fires too
  const above = record(dom0, "/fe");
  const other = record(dom0, "/other");
  await settle();
  for (const w of [state, never, above, other]) w.events.length = 0;

  await dom0.rm("/fe/device");
  await settle();
  assertEquals(state.events, ["/fe/device/vfb/0/state"]);
  assertEquals(never.events, ["/fe/device/vkbd/0"]);
  assertEquals(above.events, ["/fe/device"]);
  assertEquals(other.events, []);
  for (const w of [state, never, above, other]) w.sub.unsubscribe();
});

Deno.test("sim xenstore: watch events come in order, after the write call, never inside it", async () => {
  const { dom0 } = setup();
  let inside = false;
  const seen: [string, boolean][] = [];
  const sub = dom0.watch("/q").subscribe((p) => seen.push([p, inside]));
  await settle();
  seen.length = 0;

  inside = true;
  const writes = [
    dom0.write("/q/1", "a"),
    dom0.write("/q/2", "b"),
    dom0.rm("/q/1"),
    dom0.write("/q", "c"),
  ];
  inside = false;
  assertEquals(seen, [], "no event before the writes' microtasks run");
  await Promise.all(writes);
  await settle();
  assertEquals(seen, [["/q/1", false], ["/q/2", false], ["/q/1", false], ["/q", false]]);

  // The core too: its operation returns before anything is delivered.
  const daemon = new SimXenstoreDaemon();
  const got: string[] = [];
  daemon.addWatch(0, "/x", "tok", (p, token) => got.push(`${p} ${token}`));
  daemon.write(0, 0, "/x", "1");
  assertEquals(got, []);
  await settle();
  assertEquals(got, ["/x tok", "/x tok"]);
  sub.unsubscribe();
});

Deno.test("sim xenstore: unsubscribing removes the watch, even with events queued", async () => {
  const { daemon, dom0 } = setup();
  const w = record(dom0, "/u");
  await settle();
  assertEquals(w.events, ["/u"]);
  await dom0.write("/u", "1");
  await settle();
  assertEquals(w.events, ["/u", "/u"]);

  const pending = dom0.write("/u", "2"); // its event is queued...
  w.sub.unsubscribe(); // ...and dropped
  await pending;
  assertEquals(daemon.watchCount, 0);
  await dom0.write("/u", "3");
  await settle();
  assertEquals(w.events, ["/u", "/u"]);

  const id = daemon.addWatch(0, "/u", "t", () => {});
  assert(daemon.removeWatch(id));
  assert(!daemon.removeWatch(id));
});

Deno.test("sim xenstore: watchers only see changes to nodes they may read", async () => {
  const { dom0, domU } = setup();
  await dom0.write("/backend/vfb", "");
  await dom0.setPerms("/backend", [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
  await dom0.setPerms("/backend/vfb", [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
  const u = record(domU, "/backend");
  const z = record(dom0, "/backend");
  await settle();
  u.events.length = 0;
  z.events.length = 0;

  await dom0.write("/backend/vfb/visible", "1"); // inherits r3
  await dom0.write("/backend/hidden", "2");
  await dom0.setPerms("/backend/hidden", [{ domid: 0, perm: "n" }]); // inherits r3 before: seen (old perms)
  await dom0.write("/backend/hidden", "3"); // not readable by 3 now
  await dom0.rm("/backend/hidden"); // judged by the perms before removal: not readable
  await dom0.rm("/backend/vfb"); // was readable
  await settle();
  assertEquals(u.events, [
    "/backend/vfb/visible",
    "/backend/hidden",
    "/backend/hidden",
    "/backend/vfb",
  ]);
  assertEquals(z.events, [
    "/backend/vfb/visible",
    "/backend/hidden",
    "/backend/hidden",
    "/backend/hidden",
    "/backend/hidden",
    "/backend/vfb",
  ]);

  // A domU may watch a path it cannot read: the first event still comes.
  const secret = record(domU, "/secret");
  await settle();
  await dom0.write("/secret", "x");
  await settle();
  assertEquals(secret.events, ["/secret"]);
  for (const w of [u, z, secret]) w.sub.unsubscribe();
});

Deno.test("sim xenstore: @introduceDomain and @releaseDomain", async () => {
  const { daemon, dom0, domU } = setup();
  const intro0 = record(dom0, "@introduceDomain");
  const release0 = record(dom0, "@releaseDomain");
  const releaseU = record(domU, "@releaseDomain");
  const tree = record(dom0, "/");
  await settle();
  for (const w of [intro0, release0, releaseU, tree]) w.events.length = 0;

  daemon.introduceDomain(5);
  daemon.releaseDomain(5);
  await settle();
  assertEquals(intro0.events, ["@introduceDomain"]);
  assertEquals(release0.events, ["@releaseDomain"]);
  assertEquals(releaseU.events, [], "special events are for dom0 unless granted");
  assertEquals(tree.events, [], "not a tree path");
  assertEquals([...daemon.domains], [0]);

  await assertRejects(domU.setPerms("@releaseDomain", [{ domid: 3, perm: "n" }]), errno("EACCES"));
  await dom0.setPerms("@releaseDomain", [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
  assertEquals(await domU.getPerms("@releaseDomain"), [{ domid: 0, perm: "n" }, {
    domid: 3,
    perm: "r",
  }]);
  daemon.releaseDomain(6);
  await settle();
  assertEquals(releaseU.events, ["@releaseDomain"]);
  await assertRejects(dom0.read("@releaseDomain"), errno("EINVAL"));
  for (const w of [intro0, release0, releaseU, tree]) w.sub.unsubscribe();
});

Deno.test("sim xenstore: releaseDomain revokes the domain's rights", async () => {
  const { daemon, dom0 } = setup();
  await dom0.write("/local/domain/5/x", "1");
  await dom0.setPerms("/local/domain/5", [{ domid: 5, perm: "n" }, { domid: 7, perm: "r" }]);
  await dom0.setPerms("/local/domain/5/x", [{ domid: 0, perm: "n" }, { domid: 5, perm: "b" }]);
  daemon.introduceDomain(5);
  assert(daemon.domains.has(5));
  daemon.releaseDomain(5);
  assertEquals(await dom0.getPerms("/local/domain/5"), [{ domid: 0, perm: "n" }, {
    domid: 7,
    perm: "r",
  }]);
  assertEquals(await dom0.getPerms("/local/domain/5/x"), [{ domid: 0, perm: "n" }]);
  await assertRejects(daemon.connect(5).read("/local/domain/5"), errno("EACCES"));
});

Deno.test("sim xenstore: a transaction sees its own writes; others see them only after commit", async () => {
  const { daemon, dom0 } = setup();
  const other = daemon.connect(0);
  await dom0.write("/t/old", "o");
  const w = record(other, "/t");
  await settle();
  w.events.length = 0;

  const result = await dom0.transaction(async (tx) => {
    await tx.write("/t/new/deep", "n");
    await tx.rm("/t/old");
    assertEquals(await tx.read("/t/new/deep"), "n");
    assertEquals(await tx.read("/t/old"), undefined);
    assertEquals(await tx.directory("/t"), ["new"]);
    assertEquals(await other.read("/t/new/deep"), undefined, "not visible outside");
    assertEquals(await other.read("/t/old"), "o");
    await other.write("/unrelated", "u"); // not accessed by the transaction: no conflict
    await settle();
    assertEquals(w.events, [], "no watch event before commit");
    return 42;
  });
  assertEquals(result, 42);
  assertEquals(await other.read("/t/new/deep"), "n");
  assertEquals(await other.read("/t/old"), undefined);
  assertEquals(w.events, ["/t/new/deep", "/t/old"]);
  w.sub.unsubscribe();
});

Deno.test("sim xenstore: a transaction reads a snapshot; a concurrent change makes commit EAGAIN", async () => {
  const daemon = new SimXenstoreDaemon();
  daemon.write(0, 0, "/x", "before");
  const tx = daemon.transactionStart(0);
  daemon.write(0, 0, "/x", "after");
  assertEquals(daemon.read(0, tx, "/x"), "before", "snapshot taken at start");
  daemon.write(0, tx, "/y", "from tx");
  assertThrows(() => daemon.transactionEnd(0, tx, true), errno("EAGAIN"));
  assertThrows(() => daemon.read(0, 0, "/y"), errno("ENOENT"), "nothing applied");
  assertThrows(
    () => daemon.transactionEnd(0, tx, true),
    errno("ENOENT"),
    "the transaction is gone",
  );

  // Listing a directory conflicts with a child added meanwhile.
  daemon.mkdir(0, 0, "/d");
  const t2 = daemon.transactionStart(0);
  assertEquals(daemon.directory(0, t2, "/d"), []);
  daemon.write(0, 0, "/d/c", "");
  assertThrows(() => daemon.transactionEnd(0, t2, true), errno("EAGAIN"));

  // Two creators of siblings conflict through the parent's child list.
  const t3 = daemon.transactionStart(0);
  daemon.write(0, t3, "/d/mine", "1");
  daemon.write(0, 0, "/d/theirs", "2");
  assertThrows(() => daemon.transactionEnd(0, t3, true), errno("EAGAIN"));

  // A read of a missing node conflicts with its creation.
  const t4 = daemon.transactionStart(0);
  assertThrows(() => daemon.read(0, t4, "/late"), errno("ENOENT"));
  daemon.write(0, 0, "/late", "");
  assertThrows(() => daemon.transactionEnd(0, t4, true), errno("EAGAIN"));

  // Untouched nodes do not conflict; aborting applies nothing.
  const t5 = daemon.transactionStart(0);
  daemon.write(0, t5, "/d/fine", "1");
  daemon.write(0, 0, "/elsewhere", "2");
  const got: string[] = [];
  const id = daemon.addWatch(0, "/d/fine", "t", (p) => got.push(p));
  await settle();
  daemon.transactionEnd(0, t5, true);
  assertEquals(daemon.read(0, 0, "/d/fine"), "1");
  assertEquals(got, ["/d/fine"], "the commit's events come later, not inside transactionEnd");
  await settle();
  assertEquals(got, ["/d/fine", "/d/fine"]);
  daemon.removeWatch(id);
  const t6 = daemon.transactionStart(0);
  daemon.write(0, t6, "/aborted", "1");
  daemon.transactionEnd(0, t6, false);
  assertThrows(() => daemon.read(0, 0, "/aborted"), errno("ENOENT"));

  // A transaction belongs to its domain.
  const t7 = daemon.transactionStart(0);
  assertThrows(() => daemon.read(3, t7, "/x"), errno("ENOENT"));
  assertThrows(() => daemon.transactionEnd(3, t7, true), errno("ENOENT"));
  assertThrows(() => daemon.transactionEnd(0, 9999, true), errno("ENOENT"));
});

Deno.test("sim xenstore: transaction retries the body when a conflicting write intervenes", async () => {
  const { daemon, dom0 } = setup();
  const other = daemon.connect(0);
  await dom0.write("/counter", "1");
  let runs = 0;
  const result = await dom0.transaction(async (tx) => {
    runs++;
    const n = Number(await tx.read("/counter"));
    if (runs === 1) await other.write("/counter", "10"); // conflicts with the read
    await tx.write("/counter", String(n + 1));
    return n;
  });
  assertEquals(runs, 2);
  assertEquals(result, 10);
  assertEquals(await dom0.read("/counter"), "11");
});

Deno.test("sim xenstore: transaction gives up with EAGAIN after a bounded number of tries", async () => {
  const { daemon, dom0 } = setup();
  const other = daemon.connect(0);
  let runs = 0;
  await assertRejects(
    dom0.transaction(async (tx) => {
      runs++;
      await tx.read("/hot");
      await other.write("/hot", String(runs));
    }),
    errno("EAGAIN"),
  );
  assertEquals(runs, TRANSACTION_TRIES);
});

Deno.test("sim xenstore: a throwing body aborts the transaction", async () => {
  const { dom0 } = setup();
  const w = record(dom0, "/ab");
  await settle();
  w.events.length = 0;
  let runs = 0;
  let leaked: Parameters<Parameters<Xenstore["transaction"]>[0]>[0] | undefined;
  await assertRejects(
    dom0.transaction(async (tx) => {
      runs++;
      leaked = tx;
      await tx.write("/ab/x", "1");
      throw new Error("boom");
    }),
    /boom/,
  );
  assertEquals(runs, 1);
  assertEquals(await dom0.read("/ab/x"), undefined);
  await settle();
  assertEquals(w.events, []);
  await assertRejects(leaked!.read("/ab/x"), errno("ENOENT"), "ops of an ended transaction fail");
  w.sub.unsubscribe();
});

Deno.test("sim xenstore: transactions check permissions too", async () => {
  const { dom0, domU } = setup();
  await dom0.write("/ro", "r");
  await dom0.setPerms("/ro", [{ domid: 0, perm: "r" }]);
  await assertRejects(domU.transaction((tx) => tx.write("/ro", "x")), errno("EACCES"));
  assertEquals(await domU.transaction((tx) => tx.read("/ro")), "r");
  assertEquals(await dom0.read("/ro"), "r");
});

Deno.test("sim xenstore: close removes the connection's watches and ends its use", async () => {
  const { daemon, dom0, domU } = setup();
  const a = record(domU, "/a");
  const b = record(domU, "/b");
  const z = record(dom0, "/a");
  assertEquals(daemon.watchCount, 3);
  domU.close();
  assertEquals(daemon.watchCount, 1);
  assert(a.done() && b.done());
  await settle();
  assertEquals(a.events, [], "queued first events are dropped too");
  assertEquals(z.events, ["/a"]);
  await assertRejects(domU.read("/a"), errno("EBADF"));
  let error: unknown;
  domU.watch("/a").subscribe({ error: (e) => error = e });
  assert(errno("EBADF")(error));
  domU.close(); // twice is fine
  z.sub.unsubscribe();
});
