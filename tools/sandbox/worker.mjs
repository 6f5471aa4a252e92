// The worker that holds CPython (Pyodide). Model code runs here, in WebAssembly: it has no
// system calls, only what this JavaScript realm offers, and Deno refuses that realm every
// permission it was not started with.
import { loadPyodide } from "npm:pyodide@314.0.8";

const decoder = new TextDecoder();
let pyodide = null;
let runJob = null;

function capture(limits, stream) {
  // Python's fd 1 and 2 end here. Keep the first `shown` bytes; past `max` writes fail, which
  // Python sees as an OSError, so a print loop cannot fill memory.
  const state = { text: "", bytes: 0, overflow: false };
  const write = (buffer) => {
    if (state.text.length < limits.shown_bytes) state.text += decoder.decode(buffer.subarray(0, limits.shown_bytes));
    state.bytes += buffer.length;
    if (state.bytes > limits.max_output_bytes) {
      state.overflow = true;
      throw new Error(`more than ${limits.max_output_bytes} bytes written to ${stream}`);
    }
    return buffer.length;
  };
  return { state, write };
}

async function load(snapshot) {
  pyodide = await loadPyodide({ _loadSnapshot: Deno.readFileSync(snapshot), stdin: () => null });
  const driver = await Deno.readTextFile(new URL("./driver.py", import.meta.url));
  const namespace = pyodide.globals.get("dict")();
  pyodide.runPython(driver, { globals: namespace });
  runJob = namespace.get("run_job");
  self.postMessage({ kind: "ready" });
}

function limitFiles(job) {
  // The files a program writes live in memory, which the memory limit bounds anyway; these keep
  // the old per-file and file-count limits, so a runaway write loop fails fast with a clear error.
  // (Code can undo them through Pyodide's API, and then meets the memory limit instead.)
  const { FS, ERRNO_CODES } = pyodide;
  const MEMFS = FS.filesystems.MEMFS;
  let created = 0;
  const fileOps = MEMFS.ops_table.file.stream;  // shared by every file's stream
  const write = fileOps.write;
  fileOps.write = function (stream, buffer, offset, length, position, canOwn) {
    if (position + length > job.file_bytes) throw new FS.ErrnoError(ERRNO_CODES.EFBIG);
    return write.call(this, stream, buffer, offset, length, position, canOwn);
  };
  const resize = MEMFS.resizeFileStorage;  // truncate() to a size
  MEMFS.resizeFileStorage = function (node, size) {
    if (size > job.file_bytes) throw new FS.ErrnoError(ERRNO_CODES.EFBIG);
    return resize.call(this, node, size);
  };
  const createNode = MEMFS.createNode;
  MEMFS.createNode = function (parent, name, mode, dev) {
    if (FS.isFile(mode) && ++created > job.max_files) throw new FS.ErrnoError(ERRNO_CODES.ENOSPC);
    return createNode.call(this, parent, name, mode, dev);
  };
}

function hostModule(shared) {
  // The one way out to the host: post the call and block until the runner's thread answers.
  const flag = new Int32Array(shared, 0, 2);
  return {
    call(text) {
      Atomics.store(flag, 0, 0);
      self.postMessage({ kind: "call", text: String(text) });
      Atomics.wait(flag, 0, 0);
      const reply = decoder.decode(new Uint8Array(shared, 8, Atomics.load(flag, 1)).slice());
      if (Atomics.load(flag, 0) !== 1) throw new Error(reply);
      return reply;
    },
  };
}

function run(job, shared) {
  const out = capture(job, "stdout");
  const err = capture(job, "stderr");
  pyodide.setStdout({ write: out.write });
  pyodide.setStderr({ write: err.write });
  limitFiles(job);
  if (shared) pyodide.registerJsModule("reasoner_host", hostModule(shared));
  // Nested workers would be threads outside the deadline's reach; the memory limit still
  // bounds any that code finds another way to start.
  delete globalThis.Worker;
  // Deno keeps the Cache API's entries on disk; its folder is blocked too (sandbox_runtime.py).
  delete globalThis.caches;
  let result;
  try {
    result = runJob(job.code, job.value_cap, job.memory_bytes, pyodide.toPy({ file_bytes: job.file_bytes, max_files: job.max_files }));
  } catch (error) {
    result = JSON.stringify({ ok: false, error: String(error?.message ?? error).slice(-job.value_cap) });
  }
  self.postMessage({
    kind: "result",
    result,
    stdout: out.state.text, stdout_bytes: out.state.bytes, stdout_overflow: out.state.overflow,
    stderr: err.state.text, stderr_bytes: err.state.bytes, stderr_overflow: err.state.overflow,
  });
}

self.onmessage = async ({ data }) => {
  if (data.kind === "load") await load(data.snapshot);
  else if (data.kind === "run") run(data.job, data.shared);
};
