// A small MCP server (stdio) built on the official TypeScript SDK, for what server-everything
// does not do on demand: tools added at run time (tools/list_changed), a JSON-RPC error, a tool
// error, a slow tool and a crash.
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

const object = (properties = {}, required = []) => ({ type: "object", properties, required });
const tools = [
  { name: "add-tool", description: "Adds a tool named `name` that returns `name`.", inputSchema: object({ name: { type: "string" } }, ["name"]) },
  { name: "reject", description: "Always answers with a JSON-RPC invalid-params error.", inputSchema: object({ value: {} }) },
  { name: "fail", description: "Always answers with isError.", inputSchema: object() },
  { name: "sleep", description: "Answers after `ms` milliseconds.", inputSchema: object({ ms: { type: "number" } }, ["ms"]) },
  { name: "crash", description: "Exits the process with code 3.", inputSchema: object() },
];

const server = new Server({ name: "loom-test-dynamic", version: "1.0.0" }, { capabilities: { tools: { listChanged: true } } });
server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
  const args = request.params.arguments ?? {};
  switch (request.params.name) {
    case "add-tool":
      if (!tools.some((t) => t.name === args.name)) {
        tools.push({ name: args.name, description: `Added at run time.`, inputSchema: object() });
        await server.sendToolListChanged();
      }
      return { content: [{ type: "text", text: `added ${args.name}` }] };
    case "reject":
      throw new McpError(ErrorCode.InvalidParams, "value is not acceptable");
    case "fail":
      return { content: [{ type: "text", text: "the tool failed on purpose" }], isError: true };
    case "sleep":
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, args.ms);
        extra.signal.addEventListener("abort", () => { clearTimeout(timer); reject(new Error("cancelled")); });
      });
      return { content: [{ type: "text", text: `slept ${args.ms} ms` }] };
    case "crash":
      process.exit(3);
    default:
      if (tools.some((t) => t.name === request.params.name)) {
        return { content: [{ type: "text", text: request.params.name }] };
      }
      throw new McpError(ErrorCode.InvalidParams, `Tool ${request.params.name} not found`);
  }
});
await server.connect(new StdioServerTransport());
