-- graft for Neovim: apply a lazy edit snippet from a register to the current
-- buffer through the graft language server.
--
--   require('graft').setup {
--     cmd = { 'graft', 'lsp' },            -- the server command
--     settings = { engine = 'auto' },       -- modelPath, device, engine, preview, logLevel, logFile
--     register = '+',                       -- default register for :GraftApply
--   }
--
-- Commands: :GraftApply [register], :GraftStatus. Code actions of kind
-- refactor.rewrite run the same apply ("graft.applyFromClipboard").
local M = {}

M.config = { cmd = nil, settings = {}, register = '+', progress = true }

-- The last reply to graft/apply ({err=..., result=...}) and every $/progress
-- value seen, for callers and tests.
M.last = nil
M.progress = {}

local function client_for(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'graft' })[1]
end

local function notify(msg, level)
  vim.notify('graft: ' .. msg, level or vim.log.levels.INFO)
end

--- Sends graft/apply for `opts.bufnr` (default: current buffer) with
--- `opts.update` (the snippet); `opts.version` defaults to the buffer's
--- current version. Other fields (instruction, engine, dryRun, force) are
--- passed through. `callback(err, result)` is called with the reply.
--- Returns the client and request id (for cancel_request), or nil.
function M.apply(opts, callback)
  local bufnr = opts.bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    notify('no graft server attached to this buffer', vim.log.levels.ERROR)
    return nil
  end
  local params = {
    textDocument = {
      uri = vim.uri_from_bufnr(bufnr),
      version = opts.version or vim.lsp.util.buf_versions[bufnr],
    },
    update = opts.update,
    instruction = opts.instruction,
    engine = opts.engine,
    dryRun = opts.dryRun,
    force = opts.force,
  }
  local ok, id = client:request('graft/apply', params, function(err, result)
    M.last = { err = err, result = result }
    if callback then
      callback(err, result)
    elseif err then
      notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
    elseif result.applied then
      notify(string.format('applied (%d edits, %.0f ms)', #result.edits, result.stats.total_ms))
    else
      notify('not applied: ' .. (result.reason or '?'), vim.log.levels.WARN)
    end
  end, bufnr)
  if not ok then
    return nil
  end
  return client, id
end

--- Applies the snippet in `register` (default: the configured one).
function M.apply_register(register, bufnr)
  register = (register and register ~= '') and register or M.config.register
  local update = vim.fn.getreg(register)
  if update == '' then
    notify('register ' .. register .. ' is empty', vim.log.levels.WARN)
    return nil
  end
  return M.apply({ bufnr = bufnr, update = update })
end

--- Requests graft/status; `callback(err, status)` or a notification.
function M.status(callback, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    notify('no graft server attached to this buffer', vim.log.levels.ERROR)
    return
  end
  client:request('graft/status', nil, function(err, status)
    if callback then
      return callback(err, status)
    end
    if err then
      return notify(err.message, vim.log.levels.ERROR)
    end
    local last = status.lastApply
    local lines = {
      string.format('engine %s on %s, model %s (%s)', status.engine, status.device, status.model.path,
        status.model.loaded and 'loaded' or 'not loaded'),
      last and string.format('last apply: %s, %s, %.1f tok/s', last.engine, last.applied and 'applied' or 'not applied',
        last.tokensPerSecond) or 'no apply yet',
    }
    notify(table.concat(lines, '\n'))
  end, bufnr)
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {})
  local lsp = { init_options = M.config.settings, settings = { graft = M.config.settings } }
  if M.config.cmd then
    lsp.cmd = M.config.cmd
  end
  vim.lsp.config('graft', lsp)
  vim.lsp.enable('graft')

  -- The client-side command the server's code actions run.
  vim.lsp.commands['graft.applyFromClipboard'] = function(_, ctx)
    M.apply_register(nil, ctx.bufnr)
  end

  vim.api.nvim_create_user_command('GraftApply', function(args)
    M.apply_register(args.args)
  end, { nargs = '?', desc = 'Apply the lazy edit snippet in a register (default +) with graft' })
  vim.api.nvim_create_user_command('GraftStatus', function()
    M.status()
  end, { desc = 'Show the graft server status' })

  vim.api.nvim_create_autocmd('LspProgress', {
    group = vim.api.nvim_create_augroup('graft.progress', { clear = true }),
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if not client or client.name ~= 'graft' then
        return
      end
      local value = ev.data.params.value
      table.insert(M.progress, value)
      if M.config.progress then
        local text = value.title or value.message or ''
        if value.message and value.title then
          text = value.title .. ': ' .. value.message
        end
        vim.api.nvim_echo({ { 'graft: ' .. text .. (value.percentage and (' ' .. value.percentage .. '%') or '') } }, false, {})
      end
    end,
  })
end

return M
