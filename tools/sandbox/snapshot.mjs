// Setup, never model code: boot CPython once, import the modules programs commonly use, and save
// the WebAssembly memory, so each run restores it instead of booting (about 5x faster).
import { loadPyodide } from "npm:pyodide@314.0.8";

const [path, modules] = Deno.args;
const pyodide = await loadPyodide({ _makeSnapshot: true });
pyodide.runPython(`import ${modules}`);
Deno.writeFileSync(path, pyodide.makeMemorySnapshot());
