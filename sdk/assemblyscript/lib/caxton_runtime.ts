// Caxton's routing of what AssemblyScript's standard library imports from the JavaScript host
// (`env.abort`, `env.trace`, `env.seed`, `env.Date.now`, `env.console.*`): the asconfig.json
// preset puts this file on the library path and `--use`s these globals in their place, so a
// module imports only `caxton` and `wasi_snapshot_preview1`, which a Caxton node provides.
//
//   abort          -> an error line in the agent's log (message, file, line), then a trap
//   trace          -> a debug line in the agent's log
//   seed           -> 8 random bytes from WASI random_get (Math.random's seed)
//   Date.now()     -> the WASI realtime clock (milliseconds)
//   console.*      -> the agent's log at the matching level

import { Date } from "date";

@external("caxton", "log")
declare function caxton_host_log(level: i32, ptr: usize, len: i32): void;

@external("wasi_snapshot_preview1", "random_get")
declare function caxton_random_get(buf: usize, len: usize): u16;

@external("wasi_snapshot_preview1", "clock_time_get")
declare function caxton_clock_time_get(id: u32, precision: u64, out: usize): u16;

// Scratch space for the WASI calls above (8 bytes, aligned), outside the managed heap.
const caxton_scratch = memory.data(8, 8);

function caxton_log_text(level: i32, text: string): void {
  const utf8 = String.UTF8.encode(text);
  caxton_host_log(level, changetype<usize>(utf8), utf8.byteLength);
}

export function caxton_abort(
  message: string | null,
  fileName: string | null,
  lineNumber: u32,
  columnNumber: u32
): void {
  let text = "abort: " + (message !== null ? message : "(no message)");
  if (fileName !== null) {
    text += " at " + fileName + ":" + lineNumber.toString() + ":" + columnNumber.toString();
  }
  caxton_log_text(3, text);
  unreachable();
}

export function caxton_trace(
  message: string,
  n: i32 = 0,
  a0: f64 = 0,
  a1: f64 = 0,
  a2: f64 = 0,
  a3: f64 = 0,
  a4: f64 = 0
): void {
  let text = "trace: " + message;
  if (n > 0) text += " " + a0.toString();
  if (n > 1) text += ", " + a1.toString();
  if (n > 2) text += ", " + a2.toString();
  if (n > 3) text += ", " + a3.toString();
  if (n > 4) text += ", " + a4.toString();
  caxton_log_text(0, text);
}

export function caxton_seed(): f64 {
  if (caxton_random_get(caxton_scratch, 8) != 0) return 1.0;
  // Any bits will do for a seed, but keep it a finite, non-zero number.
  const bits = (load<u64>(caxton_scratch) & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000;
  return reinterpret<f64>(bits);
}

export class caxton_Date extends Date {
  static now(): i64 {
    if (caxton_clock_time_get(0, 1_000_000, caxton_scratch) != 0) return 0;
    return <i64>(load<u64>(caxton_scratch) / 1_000_000);
  }
}

export namespace caxton_console {
  export function assert<T>(condition: T, message: string = ""): void {
    if (!condition) caxton_log_text(3, "assertion failed: " + message);
  }
  export function log(message: string = ""): void {
    caxton_log_text(1, message);
  }
  export function debug(message: string = ""): void {
    caxton_log_text(0, message);
  }
  export function info(message: string = ""): void {
    caxton_log_text(1, message);
  }
  export function warn(message: string = ""): void {
    caxton_log_text(2, message);
  }
  export function error(message: string = ""): void {
    caxton_log_text(3, message);
  }
}
