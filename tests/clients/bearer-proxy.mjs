// A loopback HTTP proxy that adds `Authorization: Bearer <token>` to every request and changes
// nothing else (Host and Origin pass through as sent, bodies and event streams are piped both
// ways). The MCP conformance suite has no option to send a token; Warden's /mcp refuses any
// request without one, so scripts/conformance puts this in front of `warden serve`. The
// authorization rules themselves are checked by tests/e2e/mcp/http.rs.
//
//   node bearer-proxy.mjs <upstream host:port> <token file>
// prints `listening <port>` once ready.
import http from "node:http";
import fs from "node:fs";

const [upstream, tokenFile] = process.argv.slice(2);
const [upHost, upPort] = upstream.split(":");
const token = fs.readFileSync(tokenFile, "utf8").trim();

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const out = http.request(
    { host: upHost, port: Number(upPort), method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    },
  );
  out.on("error", (e) => {
    res.writeHead(502, { "content-type": "text/plain" });
    res.end(`proxy: ${e.message}`);
  });
  res.on("close", () => out.destroy());
  req.pipe(out);
});
server.listen(0, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
