// The client: starts `caseflow lsp` for .flow documents. Everything the editor shows beyond
// colours (diagnostics, hover, definition, completion, rename, formatting, quick fixes) comes
// from the server, which reuses the checker of `caseflow check`.
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions } from "vscode-languageclient/node";

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration("caseflow");
  const command = config.get<string>("path") || "caseflow";
  const rules = config.get<string>("rules") || "";
  const args = rules ? ["lsp", "--rules", rules] : ["lsp"];
  const serverOptions: ServerOptions = { command, args };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file", language: "flow" }],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/{*.flow,rules/*.toml}") },
  };
  client = new LanguageClient("caseflow", "caseflow", serverOptions, clientOptions);
  context.subscriptions.push(client);
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
