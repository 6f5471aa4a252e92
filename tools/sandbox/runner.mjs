// One single-use sandbox run, started by reasoner.tools.sandbox_runtime.
//
// This main thread never runs Python: it starts the worker (which loads CPython from the memory
// snapshot), prints "READY", reads one job line from stdin, hands it over and waits. Because it
// stays free, it can end the whole process at the deadline, and on stdin's end of file (the
// caller died or gave up), even while the program spins or blocks inside the worker.
// Deno itself is started with no permissions beyond reading the Pyodide files, this folder and
// the snapshot: no writes, network, subprocesses, environment, system information or FFI.
const [snapshot, workerUrl] = Deno.args;
const encoder = new TextEncoder();

function emit(message) {
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

function finish(message, code) {
  try {
    emit(message);
  } finally {
    Deno.exit(code);
  }
}

const worker = new Worker(workerUrl, { type: "module" });
let job = null;
worker.onerror = (event) => {
  event.preventDefault();
  finish({ kind: "crash", error: String(event.message ?? event).slice(0, 2000) }, 2);
};
worker.onmessage = ({ data }) => {
  if (data?.kind === "ready" && job === null) {
    emit({ kind: "ready" });
    readJob();
  } else {
    // From here on the worker ran model code, so this may be anything: the caller validates it.
    finish({ kind: "report", report: data }, 0);
  }
};
worker.postMessage({ kind: "load", snapshot });

async function readJob() {
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) Deno.exit(job === null ? 3 : 4); // the caller is gone: stop at once
    if (job !== null) continue;
    text += decoder.decode(value, { stream: true });
    const newline = text.indexOf("\n");
    if (newline < 0) continue;
    job = JSON.parse(text.slice(0, newline));
    setTimeout(() => finish({ kind: "timeout" }, 5), job.timeout_ms);
    worker.postMessage({ kind: "run", job });
  }
}
