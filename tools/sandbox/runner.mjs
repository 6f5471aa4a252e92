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
  } else if (data?.kind === "call" && job?.callbacks) {
    hostCall(data);
  } else {
    // From here on the worker ran model code, so this may be anything: the caller validates it.
    finish({ kind: "report", report: data }, 0);
  }
};
worker.postMessage({ kind: "load", snapshot });

// Callbacks: a program may ask the host something and wait (flowchart's ask()/calc()). The worker
// blocks on a SharedArrayBuffer (no permission needed); this thread forwards the call on stdout
// and the host's answer from stdin. The count and size of calls are held here, out of the
// program's reach, and the deadline counts only the time the program itself runs.
let shared = null, pending = false, calls = 0, deadline = null, left = 0, started = 0;

function arm(ms) {
  left = ms;
  started = Date.now();
  deadline = setTimeout(() => finish({ kind: "timeout" }, 5), ms);
}

function hostCall(data) {
  const { max_calls, max_call_bytes } = job.callbacks;
  const text = typeof data.text === "string" ? data.text : "";
  if (pending || ++calls > max_calls || text.length > max_call_bytes || typeof data.text !== "string") {
    finish({ kind: "flood", calls, error: pending ? "a call while another waits" :
      calls > max_calls ? `more than ${max_calls} calls to the host` : `a call of over ${max_call_bytes} characters` }, 6);
  }
  pending = true;
  clearTimeout(deadline);
  left -= Date.now() - started;
  emit({ kind: "call", text });
}

function answer(message) {
  if (!pending) finish({ kind: "crash", error: "an answer with no call waiting" }, 2);
  pending = false;
  const flag = new Int32Array(shared, 0, 2);
  const bytes = encoder.encode(String(message.text ?? "")).subarray(0, shared.byteLength - 8);
  new Uint8Array(shared, 8).set(bytes);
  Atomics.store(flag, 1, bytes.length);
  Atomics.store(flag, 0, message.ok ? 1 : 2);
  Atomics.notify(flag, 0);
  arm(Math.max(left, 1));
}

async function readJob() {
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) Deno.exit(job === null ? 3 : 4); // the caller is gone: stop at once
    if (job !== null && !job.callbacks) continue;
    text += decoder.decode(value, { stream: true });
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n")) {
      const line = JSON.parse(text.slice(0, newline));
      text = text.slice(newline + 1);
      if (job !== null) {
        answer(line);
        continue;
      }
      job = line;
      arm(job.timeout_ms);
      if (job.callbacks) shared = new SharedArrayBuffer(8 + job.callbacks.max_answer_bytes);
      worker.postMessage({ kind: "run", job, shared });
    }
  }
}
