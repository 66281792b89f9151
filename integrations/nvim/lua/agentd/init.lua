-- agentd for Neovim: the number of active agents for your statusline, kept current by one
-- subscription to agentd's /v1/events over its Unix socket, and a picker of agents
-- (:AgentdPicker) that opens the chosen one (its shared session URL, or its resume command in
-- a terminal split).
--
--   require('agentd').setup({ tab = 'personal' })   -- or 'all'
--   vim.o.statusline = vim.o.statusline .. ' %{v:lua.require("agentd").statusline()}'

local uv = vim.loop
local M = {
  config = { socket = nil, tab = 'personal', reconnect_ms = 2000 },
  summary = nil, -- the latest summary event: {working, blocked, active, today}
  connected = false,
}

local function default_socket()
  local env = os.getenv('AGENTD_SOCKET')
  if env and env ~= '' then return env end
  local run = os.getenv('XDG_RUNTIME_DIR')
  if run and run ~= '' then return run .. '/agentd/agentd.sock' end
  local state = os.getenv('AGENTD_STATE_DIR')
  if not state or state == '' then
    local xdg = os.getenv('XDG_STATE_HOME')
    state = (xdg and xdg ~= '' and xdg or (os.getenv('HOME') .. '/.local/state')) .. '/agentd'
  end
  return state .. '/agentd.sock'
end

-- Splits an HTTP/1.1 answer into status and body (sized or chunked).
local function parse_response(raw)
  local head_end = raw:find('\r\n\r\n', 1, true)
  if not head_end then return nil, 'incomplete answer' end
  local head, body = raw:sub(1, head_end - 1), raw:sub(head_end + 4)
  local status = tonumber(head:match('^HTTP/1%.%d (%d+)'))
  if head:lower():find('transfer%-encoding: chunked') then
    local out, pos = {}, 1
    while true do
      local line_end = body:find('\r\n', pos, true)
      if not line_end then break end
      local size = tonumber(body:sub(pos, line_end - 1):match('^%x+'), 16)
      if not size or size == 0 then break end
      table.insert(out, body:sub(line_end + 2, line_end + 1 + size))
      pos = line_end + 2 + size + 2
    end
    body = table.concat(out)
  end
  return status, body
end

-- GET `path` on the socket; waits up to `timeout_ms`. Returns the decoded JSON or nil, error.
function M.get(path, timeout_ms)
  local pipe = uv.new_pipe(false)
  local chunks, done, failure = {}, false, nil
  pipe:connect(M.config.socket or default_socket(), function(err)
    if err then
      failure, done = 'agentd is not reachable: ' .. err, true
      pipe:close()
      return
    end
    pipe:write('GET ' .. path .. ' HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    pipe:read_start(function(rerr, data)
      if rerr or not data then
        if rerr then failure = rerr end
        done = true
        pipe:close()
        return
      end
      table.insert(chunks, data)
    end)
  end)
  vim.wait(timeout_ms or 2000, function() return done end, 10)
  if not done then
    pipe:close()
    return nil, 'agentd did not answer in time'
  end
  if failure then return nil, failure end
  local status, body = parse_response(table.concat(chunks))
  if status ~= 200 then return nil, 'agentd answered ' .. tostring(status) .. ': ' .. tostring(body) end
  local ok, value = pcall(vim.json.decode, body)
  if not ok then return nil, 'unreadable answer' end
  return value
end

-- The agents of the configured tab, newest activity first.
function M.list(opts)
  opts = opts or {}
  local tab = opts.tab or M.config.tab
  local page, err = M.get('/v1/agents?tab=' .. tab .. '&limit=' .. (opts.limit or 200))
  if not page then return nil, err end
  return page.items
end

-- "⚙2 🟨1" while agents are active, "" otherwise (or when agentd is not running).
function M.statusline()
  local s = M.summary
  if not s then return '' end
  local parts = {}
  if (s.working or 0) > 0 then table.insert(parts, '⚙' .. s.working) end
  if (s.blocked or 0) > 0 then table.insert(parts, '🟨' .. s.blocked) end
  return table.concat(parts, ' ')
end

local function on_event(name, data)
  if name ~= 'summary' then return end
  local ok, value = pcall(vim.json.decode, data)
  if ok and type(value) == 'table' then
    M.summary = value
    vim.cmd('redrawstatus')
  end
end

-- Subscribes to /v1/events and keeps M.summary current; reconnects when agentd restarts.
function M.subscribe()
  local pipe = uv.new_pipe(false)
  local buffer, in_body = '', false
  local function retry()
    M.connected = false
    if not pipe:is_closing() then pipe:close() end
    vim.defer_fn(M.subscribe, M.config.reconnect_ms)
  end
  pipe:connect(M.config.socket or default_socket(), function(err)
    if err then
      vim.schedule(function()
        M.summary = nil
        retry()
      end)
      return
    end
    M.connected = true
    pipe:write('GET /v1/events?tab=' .. M.config.tab .. ' HTTP/1.1\r\nHost: localhost\r\n\r\n')
    pipe:read_start(function(rerr, data)
      if rerr or not data then
        vim.schedule(retry)
        return
      end
      buffer = buffer .. data:gsub('\r\n', '\n')
      if not in_body then
        local head_end = buffer:find('\n\n', 1, true)
        if not head_end then return end
        buffer, in_body = buffer:sub(head_end + 2), true
      end
      -- Chunked framing puts size lines between events; only event/data lines matter.
      while true do
        local stop = buffer:find('\n\n', 1, true)
        if not stop then break end
        local block = buffer:sub(1, stop - 1)
        buffer = buffer:sub(stop + 2)
        local name, payload = nil, {}
        for line in block:gmatch('[^\n]+') do
          local ev = line:match('^event: (.*)$')
          local d = line:match('^data: (.*)$')
          if ev then name = ev elseif d then table.insert(payload, d) end
        end
        if name and #payload > 0 then
          local text = table.concat(payload, '\n')
          vim.schedule(function() on_event(name, text) end)
        end
      end
    end)
  end)
end

local icons = { working = '⚙', blocked = '🟨', canceled = '⬜', failed = '🔺', success = '✅' }

-- Opens an agent: its shared session URL in the browser, else its resume command in a
-- terminal split.
function M.open(item)
  local open = item.open or {}
  if open.url and open.url ~= vim.NIL then
    local opener = vim.fn.has('mac') == 1 and 'open' or 'xdg-open'
    vim.fn.jobstart({ opener, open.url }, { detach = true })
  elseif open.command and open.command ~= vim.NIL then
    vim.cmd('botright split')
    vim.fn.termopen(open.command)
  end
end

-- A picker of agents (vim.ui.select: Telescope or fzf-lua take over when installed).
function M.pick(opts)
  local items, err = M.list(opts)
  if not items then
    vim.notify('agentd: ' .. err, vim.log.levels.WARN)
    return
  end
  vim.ui.select(items, {
    prompt = 'Agents',
    format_item = function(it)
      local title = it.title ~= vim.NIL and it.title or it.id
      local detail = it.status_detail ~= vim.NIL and (' (' .. it.status_detail .. ')') or ''
      return (icons[it.status] or '') .. ' ' .. it.status .. '  ' .. title .. detail .. '  ' .. it.id
    end,
  }, function(choice)
    if choice then M.open(choice) end
  end)
end

function M.setup(opts)
  M.config = vim.tbl_extend('force', M.config, opts or {})
  M.subscribe()
end

return M
