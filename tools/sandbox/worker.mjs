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

function run(job) {
  const out = capture(job, "stdout");
  const err = capture(job, "stderr");
  pyodide.setStdout({ write: out.write });
  pyodide.setStderr({ write: err.write });
  // Nested workers would be threads outside the deadline's reach; the memory limit still
  // bounds any that code finds another way to start.
  delete globalThis.Worker;
  let result;
  try {
    result = runJob(job.code, job.value_cap, job.memory_bytes);
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
  else if (data.kind === "run") run(data.job);
};
