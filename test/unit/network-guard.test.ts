// The guard every test runs under (jest setupFiles, and the child processes running programs under mocks):
// only loopback is dialled; anything else fails before a packet or DNS query leaves the machine.
import * as http from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";

const failure = (s: net.Socket | http.ClientRequest) => new Promise<string>((resolve) => s.on("error", (e: Error) => resolve(e.message)));

test.each([
  ["a remote address over TLS", () => tls.connect({ host: "198.51.100.7", port: 5000 })],
  ["a made-up DNS name over TLS", () => tls.connect({ host: "registry.invalid", port: 5000 })],
  ["an address through http's agent", () => http.get("http://198.51.100.8:80/")],
  ["a public address through net.createConnection", () => net.createConnection(443, "203.0.113.7")],
])("%s is refused by the guard", async (_, dial) => {
  expect(await failure(dial())).toMatch(/ENOTFOUND .*test network guard: tests reach only 127\.0\.0\.0\/8 and ::1/);
});

test("loopback is dialled for real", async () => {
  const server = net.createServer((s) => s.end("hi")).listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const { port } = server.address() as net.AddressInfo;
  const data = await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    s.on("data", (d) => (got += d)).on("end", () => resolve(got)).on("error", reject);
  });
  server.close();
  expect(data).toBe("hi");
});
