-- graft's language server for Neovim 0.11's vim.lsp.config / vim.lsp.enable:
--   vim.lsp.enable('graft')
-- `require('graft').setup{}` adds commands and progress display on top.
return {
  cmd = { 'graft', 'lsp' },
  filetypes = { 'rust', 'python', 'typescript', 'typescriptreact', 'javascript', 'javascriptreact', 'go' },
  root_markers = { '.git', 'Cargo.toml', 'package.json', 'go.mod', 'pyproject.toml' },
  -- Settings graft reads: modelPath, device, engine (merge|model|auto),
  -- preview, logLevel, logFile. Sent at start and on change.
  init_options = {},
  settings = { graft = {} },
}
