-- :AgentdPicker [all] — pick an agent and open it. :AgentdStatus — print the active count.
vim.api.nvim_create_user_command('AgentdPicker', function(cmd)
  require('agentd').pick({ tab = cmd.args ~= '' and cmd.args or nil })
end, { nargs = '?', complete = function() return { 'personal', 'all' } end })

vim.api.nvim_create_user_command('AgentdStatus', function()
  local line = require('agentd').statusline()
  print(line ~= '' and line or 'agentd: no active agents')
end, {})
