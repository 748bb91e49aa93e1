/*
 * Tests may reach this machine's loopback only (127.0.0.0/8, ::1). The committed stacks name realistic
 * registries and clusters (10.x addresses, *.example.internal), and the program's rotation preflight
 * really dials them; without this guard a test would send packets to private-range addresses or DNS
 * queries for them off the machine. Every other destination now fails at once, before a packet or a DNS
 * query leaves, with an error that says why (the preflight then reports the registry as unreachable).
 * Loaded by jest (setupFiles) and by the child processes that run programs under mocks.
 */
import * as net from "node:net";

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (net.isIPv4(h)) return h.startsWith("127.");
  if (net.isIPv6(h)) return h === "::1" || h.startsWith("::ffff:127.");
  return h === "localhost";
}

function refusal(host: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${host} (test network guard: tests reach only 127.0.0.0/8 and ::1)`);
  e.code = "ENOTFOUND";
  return e;
}

type ConnectArgs = Parameters<net.Socket["connect"]>;
const original = net.Socket.prototype.connect;
net.Socket.prototype.connect = function guardedConnect(this: net.Socket, ...args: unknown[]): net.Socket {
  // net.createConnection and http's agent pass their already normalized [options, callback] as one array.
  const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
  const options = (typeof first === "object" && first !== null ? first : { port: first, host: args[1] }) as { host?: unknown; path?: unknown };
  // A truthy path is a Unix socket to net (http's agent passes path: null), and never leaves the machine.
  const host = options.path ? undefined : typeof options.host === "string" ? options.host : "localhost";
  if (host !== undefined && !isLoopback(host)) {
    process.nextTick(() => this.destroy(refusal(host)));
    return this;
  }
  return original.apply(this, args as unknown as ConnectArgs);
} as typeof original;
