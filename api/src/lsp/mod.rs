//! `caseflow lsp`: a language server for `.flow` files over stdio (the `lsp-server` and
//! `lsp-types` crates rust-analyzer is built on). A synchronous loop: every change is checked
//! at once (the checker takes milliseconds), so there is no scheduling to get wrong.
//!
//! It offers diagnostics as you type (with codes and hints), hover (a field's type and label;
//! a step's assignee and deadline, and the due time a deadline gives on the business calendar
//! for a case started now and on Friday evening), go to definition (steps, fields, and
//! `rules.NAME` and roles in the rules' TOML files), references, completion, rename of a step
//! or field, the outline, formatting, and quick fixes for the diagnostics that suggest one.
//! The rules are read from the nearest `rules/` folder above the document (or `--rules`); the
//! other `.flow` files of the document's folder are checked with it.

pub mod analysis;

use analysis::{LineIndex, Word};
use caseflow_dsl::{Diagnostic, SourceFile};
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::{RuleSet, RulesFile};
use lsp_server::{Connection, ExtractError, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, References, Rename,
};
use lsp_types::{
    CodeAction, CodeActionOrCommand, CodeActionProviderCapability, CompletionItem, CompletionItemKind,
    CompletionOptions, CompletionResponse, DiagnosticSeverity, DocumentSymbol, DocumentSymbolResponse,
    GotoDefinitionResponse, Hover, HoverContents, HoverProviderCapability, Location, MarkupContent, MarkupKind,
    NumberOrString, OneOf, Position, PublishDiagnosticsParams, Range, ServerCapabilities, SymbolKind,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Url, WorkspaceEdit,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Runs the server on stdin/stdout until the client says `exit`.
pub fn run(rules_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (connection, io_threads) = Connection::stdio();
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![">".into(), ".".into(), " ".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    connection.initialize(serde_json::to_value(capabilities)?)?;
    let mut server = Server { connection, documents: HashMap::new(), last_parsed: HashMap::new(), rules_dir };
    server.main_loop()?;
    drop(server);
    io_threads.join()?;
    Ok(())
}

struct Server {
    connection: Connection,
    documents: HashMap<Url, String>,
    /// Each document as it last parsed: what completion offers while a line is half typed.
    last_parsed: HashMap<Url, caseflow_dsl::ast::Process>,
    rules_dir: Option<PathBuf>,
}

/// The rules a document is checked against: their files (for go to definition) and, when they
/// load, the rule set.
struct Rules {
    files: Vec<RulesFile>,
    set: Option<RuleSet>,
}

impl Server {
    fn main_loop(&mut self) -> anyhow::Result<()> {
        while let Ok(message) = self.connection.receiver.recv() {
            match message {
                Message::Request(req) => {
                    if self.connection.handle_shutdown(&req)? {
                        return Ok(());
                    }
                    let id = req.id.clone();
                    let response = match self.request(req) {
                        Ok(result) => Response { id, result: Some(result), error: None },
                        Err(message) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, message),
                    };
                    self.connection.sender.send(Message::Response(response))?;
                }
                Message::Notification(n) => self.notification(n)?,
                Message::Response(_) => {}
            }
        }
        Ok(())
    }

    fn notification(&mut self, n: Notification) -> anyhow::Result<()> {
        let uri = match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let p: lsp_types::DidOpenTextDocumentParams = serde_json::from_value(n.params)?;
                self.documents.insert(p.text_document.uri.clone(), p.text_document.text);
                p.text_document.uri
            }
            DidChangeTextDocument::METHOD => {
                let p: lsp_types::DidChangeTextDocumentParams = serde_json::from_value(n.params)?;
                // Full sync: the last change is the whole text.
                if let Some(change) = p.content_changes.into_iter().last() {
                    self.documents.insert(p.text_document.uri.clone(), change.text);
                }
                p.text_document.uri
            }
            // A rules file or another process changed on disk: every open document is checked
            // again, since its diagnostics may depend on it.
            DidChangeWatchedFiles::METHOD => {
                let open: Vec<Url> = self.documents.keys().cloned().collect();
                for uri in open {
                    let diagnostics = self.diagnostics(&uri);
                    self.publish(&uri, diagnostics)?;
                }
                return Ok(());
            }
            DidCloseTextDocument::METHOD => {
                let p: lsp_types::DidCloseTextDocumentParams = serde_json::from_value(n.params)?;
                self.documents.remove(&p.text_document.uri);
                self.last_parsed.remove(&p.text_document.uri);
                self.publish(&p.text_document.uri, Vec::new())?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        if let Some(parsed) = self.text(&uri).and_then(|t| caseflow_dsl::parse::parse(t).ok()) {
            self.last_parsed.insert(uri.clone(), parsed);
        }
        let diagnostics = self.diagnostics(&uri);
        self.publish(&uri, diagnostics)
    }

    fn publish(&self, uri: &Url, diagnostics: Vec<lsp_types::Diagnostic>) -> anyhow::Result<()> {
        let params = PublishDiagnosticsParams { uri: uri.clone(), diagnostics, version: None };
        let n = Notification::new(PublishDiagnostics::METHOD.to_string(), params);
        self.connection.sender.send(Message::Notification(n))?;
        Ok(())
    }

    fn request(&mut self, req: Request) -> Result<serde_json::Value, String> {
        let req = match cast::<HoverRequest>(req) {
            Ok(p) => return to_json(self.hover(p)),
            Err(r) => r,
        };
        let req = match cast::<GotoDefinition>(req) {
            Ok(p) => return to_json(self.definition(p)),
            Err(r) => r,
        };
        let req = match cast::<References>(req) {
            Ok(p) => return to_json(self.references(p)),
            Err(r) => r,
        };
        let req = match cast::<Completion>(req) {
            Ok(p) => return to_json(self.completion(p)),
            Err(r) => r,
        };
        let req = match cast::<Rename>(req) {
            Ok(p) => return to_json(self.rename(p)?),
            Err(r) => r,
        };
        let req = match cast::<DocumentSymbolRequest>(req) {
            Ok(p) => return to_json(self.symbols(p)),
            Err(r) => r,
        };
        let req = match cast::<Formatting>(req) {
            Ok(p) => return to_json(self.formatting(p)),
            Err(r) => r,
        };
        match cast::<CodeActionRequest>(req) {
            Ok(p) => to_json(self.code_actions(p)),
            Err(r) => Err(format!("`{}` is not supported", r.method)),
        }
    }

    fn text(&self, uri: &Url) -> Option<&str> {
        self.documents.get(uri).map(String::as_str)
    }

    /// The nearest `rules/` folder above the document (or the one given), read.
    fn rules(&self, uri: &Url) -> Option<Rules> {
        let dir = self.rules_dir.clone().or_else(|| {
            let path = uri.to_file_path().ok()?;
            path.ancestors().skip(1).take(4).map(|d| d.join("rules")).find(|d| d.is_dir())
        })?;
        let files = caseflow_engine::read_rules_dir(&dir).ok()?;
        let set = RuleSet::load(&files).ok();
        Some(Rules { files, set })
    }

    /// The other `.flow` files of the document's folder.
    fn siblings(&self, uri: &Url) -> Vec<SourceFile> {
        let Ok(path) = uri.to_file_path() else { return Vec::new() };
        let Some(dir) = path.parent() else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut out: Vec<SourceFile> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "flow") && *p != path)
            .filter_map(|p| {
                // An open document's text wins over the file on disk.
                let text = Url::from_file_path(&p)
                    .ok()
                    .and_then(|u| self.documents.get(&u).cloned())
                    .or_else(|| std::fs::read_to_string(&p).ok())?;
                Some(SourceFile { name: p.display().to_string(), text })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn diagnostics(&self, uri: &Url) -> Vec<lsp_types::Diagnostic> {
        let Some(text) = self.text(uri) else { return Vec::new() };
        let rules = self.rules(uri);
        let found =
            analysis::diagnostics(uri.as_str(), text, &self.siblings(uri), rules.as_ref().and_then(|r| r.set.as_ref()));
        let index = LineIndex::new(text);
        found.iter().map(|d| to_lsp(d, &index, uri)).collect()
    }

    fn parsed(&self, uri: &Url) -> Option<(caseflow_dsl::ast::Process, &str)> {
        let text = self.text(uri)?;
        caseflow_dsl::parse::parse(text).ok().map(|p| (p, text))
    }

    fn offset(&self, uri: &Url, pos: Position) -> Option<usize> {
        Some(LineIndex::new(self.text(uri)?).offset(pos.line, pos.character))
    }

    fn hover(&self, p: lsp_types::HoverParams) -> Option<Hover> {
        let uri = &p.text_document_position_params.text_document.uri;
        let offset = self.offset(uri, p.text_document_position_params.position)?;
        let (process, text) = self.parsed(uri)?;
        let rules = self.rules(uri);
        let markdown =
            analysis::hover(&process, text, offset, rules.as_ref().and_then(|r| r.set.as_ref()), SystemClock.now())?;
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: markdown }),
            range: None,
        })
    }

    fn definition(&self, p: lsp_types::GotoDefinitionParams) -> Option<GotoDefinitionResponse> {
        let uri = &p.text_document_position_params.text_document.uri;
        let offset = self.offset(uri, p.text_document_position_params.position)?;
        let text = self.text(uri)?;
        let word = analysis::word_at(text, offset)?;
        // `rules.NAME`, a role: the rules' TOML.
        let after_rules = text[..word.start].ends_with("rules.");
        let process = caseflow_dsl::parse::parse(text).ok();
        let local = process.as_ref().and_then(|p| {
            analysis::declared(p, &word.text).map(|d| match d {
                analysis::Declared::Step(s) => s.id.span.clone(),
                analysis::Declared::Field(f) => f.name.span.clone(),
            })
        });
        if let (Some(span), false) = (local, after_rules) {
            return Some(GotoDefinitionResponse::Scalar(Location {
                uri: uri.clone(),
                range: range(&LineIndex::new(text), span),
            }));
        }
        if let Some((file, at)) = self.rules(uri).and_then(|r| analysis::rules_definition(&r.files, &word.text)) {
            let body = std::fs::read_to_string(&file).ok()?;
            let target = Url::from_file_path(std::fs::canonicalize(&file).ok()?).ok()?;
            return Some(GotoDefinitionResponse::Scalar(Location {
                uri: target,
                range: range(&LineIndex::new(&body), at..at + word.text.len()),
            }));
        }
        // A called process: its file in the folder.
        self.siblings(uri).into_iter().find_map(|f| {
            let p = caseflow_dsl::parse::parse(&f.text).ok()?;
            (p.id.name == word.text).then(|| {
                let target = Url::from_file_path(&f.name).ok()?;
                Some(GotoDefinitionResponse::Scalar(Location {
                    uri: target,
                    range: range(&LineIndex::new(&f.text), p.id.span.clone()),
                }))
            })?
        })
    }

    /// The declared step or field at a position, and where it occurs.
    fn name_at(&self, uri: &Url, pos: Position) -> Option<(Word, Vec<(usize, usize)>)> {
        let offset = self.offset(uri, pos)?;
        let (process, text) = self.parsed(uri)?;
        let word = analysis::word_at(text, offset)?;
        analysis::declared(&process, &word.text)?;
        let found = analysis::occurrences(text, &word.text);
        Some((word, found))
    }

    fn references(&self, p: lsp_types::ReferenceParams) -> Option<Vec<Location>> {
        let uri = &p.text_document_position.text_document.uri;
        let (_, found) = self.name_at(uri, p.text_document_position.position)?;
        let index = LineIndex::new(self.text(uri)?);
        Some(found.into_iter().map(|(s, e)| Location { uri: uri.clone(), range: range(&index, s..e) }).collect())
    }

    fn rename(&self, p: lsp_types::RenameParams) -> Result<Option<WorkspaceEdit>, String> {
        let uri = &p.text_document_position.text_document.uri;
        let new = p.new_name.trim();
        let valid = new.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{new}` is not a name: letters, digits and `_`, not starting with a digit"));
        }
        let Some((_, found)) = self.name_at(uri, p.text_document_position.position) else { return Ok(None) };
        if let Some((process, _)) = self.parsed(uri) {
            if analysis::declared(&process, new).is_some() {
                return Err(format!("`{new}` is already a step or field of this process"));
            }
        }
        let text = self.text(uri).unwrap_or_default();
        // A keyword (`end`, `task`, …) in place of a name leaves a file that no longer parses.
        let mut renamed = text.to_string();
        for (s, e) in found.iter().rev() {
            renamed.replace_range(*s..*e, new);
        }
        if caseflow_dsl::parse::parse(text).is_ok() && caseflow_dsl::parse::parse(&renamed).is_err() {
            return Err(format!("`{new}` cannot name a step or field: it is a word of the language"));
        }
        let index = LineIndex::new(text);
        let edits = found
            .into_iter()
            .map(|(s, e)| TextEdit { range: range(&index, s..e), new_text: new.to_string() })
            .collect();
        Ok(Some(WorkspaceEdit { changes: Some([(uri.clone(), edits)].into()), ..Default::default() }))
    }

    fn completion(&self, p: lsp_types::CompletionParams) -> Option<CompletionResponse> {
        let uri = &p.text_document_position.text_document.uri;
        let offset = self.offset(uri, p.text_document_position.position)?;
        let text = self.text(uri)?;
        // A half-typed file does not parse: complete from the last text that did.
        let process = caseflow_dsl::parse::parse(text).ok().or_else(|| self.last_parsed.get(uri).cloned());
        let rules = self.rules(uri);
        let items = analysis::completions(process.as_ref(), text, offset, rules.as_ref().and_then(|r| r.set.as_ref()))
            .into_iter()
            .map(|(label, kind)| CompletionItem {
                kind: Some(match kind {
                    "step" => CompletionItemKind::FUNCTION,
                    "field" => CompletionItemKind::FIELD,
                    "role" => CompletionItemKind::CLASS,
                    "table" => CompletionItemKind::STRUCT,
                    _ => CompletionItemKind::VALUE,
                }),
                detail: Some(kind.to_string()),
                label,
                ..Default::default()
            })
            .collect();
        Some(CompletionResponse::Array(items))
    }

    #[allow(deprecated)] // DocumentSymbol::deprecated must be written out
    fn symbols(&self, p: lsp_types::DocumentSymbolParams) -> Option<DocumentSymbolResponse> {
        let uri = &p.text_document.uri;
        let (process, text) = self.parsed(uri)?;
        let index = LineIndex::new(text);
        let children = analysis::symbols(&process)
            .into_iter()
            .map(|s| DocumentSymbol {
                detail: Some(match &s.label {
                    Some(l) => format!("{} {l}", s.kind),
                    None => s.kind.to_string(),
                }),
                kind: if s.kind == "field" { SymbolKind::FIELD } else { SymbolKind::FUNCTION },
                name: s.name,
                tags: None,
                deprecated: None,
                range: range(&index, s.whole),
                selection_range: range(&index, s.name_span),
                children: None,
            })
            .collect();
        let whole = 0..text.len();
        Some(DocumentSymbolResponse::Nested(vec![DocumentSymbol {
            name: process.id.name.clone(),
            detail: process.label.clone(),
            kind: SymbolKind::MODULE,
            tags: None,
            deprecated: None,
            range: range(&index, whole),
            selection_range: range(&index, process.id.span.clone()),
            children: Some(children),
        }]))
    }

    fn formatting(&self, p: lsp_types::DocumentFormattingParams) -> Option<Vec<TextEdit>> {
        let text = self.text(&p.text_document.uri)?;
        let formatted = caseflow_dsl::fmt::format_source(text).ok()?;
        if formatted == text {
            return Some(Vec::new());
        }
        Some(vec![TextEdit { range: range(&LineIndex::new(text), 0..text.len()), new_text: formatted }])
    }

    fn code_actions(&self, p: lsp_types::CodeActionParams) -> Option<Vec<CodeActionOrCommand>> {
        let uri = &p.text_document.uri;
        let text = self.text(uri)?;
        let rules = self.rules(uri);
        let found =
            analysis::diagnostics(uri.as_str(), text, &self.siblings(uri), rules.as_ref().and_then(|r| r.set.as_ref()));
        let index = LineIndex::new(text);
        let wanted = p.range;
        let actions = found
            .iter()
            .filter_map(|d| {
                let r = range(&index, d.span.clone());
                let overlaps = r.start <= wanted.end && wanted.start <= r.end;
                // The checker's own fix for the problem, never read back from its prose.
                let replacement = d.suggestion.clone().filter(|_| overlaps)?;
                Some(CodeActionOrCommand::CodeAction(CodeAction {
                    title: format!("Change to `{replacement}`"),
                    kind: Some(lsp_types::CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![to_lsp(d, &index, uri)]),
                    edit: Some(WorkspaceEdit {
                        changes: Some([(uri.clone(), vec![TextEdit { range: r, new_text: replacement }])].into()),
                        ..Default::default()
                    }),
                    is_preferred: Some(true),
                    ..Default::default()
                }))
            })
            .collect();
        Some(actions)
    }
}

fn cast<R: lsp_types::request::Request>(req: Request) -> Result<R::Params, Request> {
    match req.extract::<R::Params>(R::METHOD) {
        Ok((_, params)) => Ok(params),
        Err(ExtractError::MethodMismatch(req)) => Err(req),
        // Bad parameters: answered as an unsupported request rather than a crash.
        Err(ExtractError::JsonError { method, .. }) => Err(Request {
            id: RequestId::from(0),
            method: format!("{method} (with bad parameters)"),
            params: serde_json::Value::Null,
        }),
    }
}

fn to_json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

fn range(index: &LineIndex, span: std::ops::Range<usize>) -> Range {
    let (sl, sc) = index.position(span.start);
    let (el, ec) = index.position(span.end.max(span.start));
    Range { start: Position { line: sl, character: sc }, end: Position { line: el, character: ec } }
}

fn to_lsp(d: &Diagnostic, index: &LineIndex, uri: &Url) -> lsp_types::Diagnostic {
    let mut message = d.message.clone();
    if let Some(h) = &d.hint {
        message.push_str(&format!("\nhint: {h}"));
    }
    lsp_types::Diagnostic {
        range: range(index, d.span.clone()),
        severity: Some(if d.is_error() { DiagnosticSeverity::ERROR } else { DiagnosticSeverity::WARNING }),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        source: Some("caseflow".into()),
        message,
        related_information: Some(
            d.notes
                .iter()
                .map(|(span, text)| lsp_types::DiagnosticRelatedInformation {
                    location: Location { uri: uri.clone(), range: range(index, span.clone()) },
                    message: text.clone(),
                })
                .collect(),
        ),
        ..Default::default()
    }
}

/// For `caseflow lsp --rules`: a folder that must exist.
pub fn rules_dir_arg(dir: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match dir {
        Some(d) if !d.is_dir() => anyhow::bail!("{} is not a folder", d.display()),
        other => Ok(other.map(Path::to_path_buf)),
    }
}
