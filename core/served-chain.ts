import { isIP } from "node:net";
import { DetailedPeerCertificate, connect } from "node:tls";
import { Endpoint, endpointKey } from "./endpoint";

/**
 * The certificates a TLS server sends, leaf first. The trust store is deliberately empty (`ca: []`) so
 * that Node cannot complete the chain from its own roots: what comes back is what the server served,
 * linked from the leaf by issuer.
 */
export function fetchServedChain(endpoint: Endpoint, timeoutMs: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: endpoint.host,
      port: endpoint.port,
      servername: isIP(endpoint.host) ? undefined : endpoint.host,
      rejectUnauthorized: false,
      ca: [],
    });
    const fail = (e: Error) => {
      socket.destroy();
      reject(new Error(`cannot complete a TLS handshake with ${endpointKey(endpoint)}: ${e.message}`));
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`no answer within ${timeoutMs} ms`)));
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      const chain: Buffer[] = [];
      const seen = new Set<string>();
      let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        chain.push(c.raw);
        c = c.issuerCertificate;
      }
      socket.end();
      resolve(chain);
    });
  });
}
