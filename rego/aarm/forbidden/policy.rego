# METADATA
# title: Forbidden actions
# description: |
#   Tier 1 of the AARM precedence. Actions that are never acceptable, whatever the
#   facts, identity or approvals say: dropping a production database (by tool, by SQL
#   text or through a shell), wiping the root filesystem, and disabling security
#   controls or audit logging. Each finding is a DENY reason with code "forbidden".
# related_resources:
#   - ref: docs/policies/forbidden.md
#     description: forbidden policy page
# schemas:
#   - input: schema.input
package aarm.forbidden

_cfg := data.aarm.config.forbidden

_name := input.action.name

_params := input.action.parameters

# METADATA
# title: reasons
# description: A DENY reason for each forbidden pattern the action matches.
# custom:
#   rule_id: aarm.forbidden.drop_production_database
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s of database %q is forbidden: production databases are never dropped by an agent, whatever the request context claims",
	[_name, target],
)) if {
	param := _cfg.drop_database_tools[_name]
	target := _params[param]
	_is_production(target)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.drop_production_database
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s runs a DROP statement against a production (or unspecified) database; dropping production data is forbidden",
	[_name],
)) if {
	tool := _cfg.sql_tools[_name]
	sql := _params[tool.sql_param]
	regex.match(_cfg.drop_sql_pattern, sql)
	_sql_targets_production(tool, sql)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.drop_production_database
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s command contains a DROP DATABASE/SCHEMA/TABLE statement; the shell path gets the same rule as the database tools",
	[_name],
)) if {
	command := _params[_cfg.shell_tools[_name]]
	regex.match(_cfg.drop_sql_pattern, command)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.recursive_root_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s command recursively deletes a protected system path (rm -rf / and variants are forbidden)",
	[_name],
)) if {
	command := _params[_cfg.shell_tools[_name]]
	_wipes_root(command)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.recursive_root_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s of protected path %q is forbidden",
	[_name, path],
)) if {
	tool := _cfg.file_delete_tools[_name]
	path := _params[tool.path_param]
	_protected_path(path)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.disable_security_control
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s turns off a security control or audit logging; agents may never disable security controls",
	[_name],
)) if {
	_security_tool
	regex.match(_cfg.security_disable_operation_pattern, input.action.operation)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.disable_security_control
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), sprintf(
	"%s command disables a security control or audit logging (matched %q)",
	[_name, pattern],
)) if {
	command := _params[_cfg.shell_tools[_name]]
	some pattern in _cfg.security_disable_command_patterns
	regex.match(pattern, command)
}

_reason(meta, message) := {
	"code": meta.custom.code,
	"rule_id": meta.custom.rule_id,
	"message": message,
}

_is_production(value) if regex.match(_cfg.production_pattern, value)

# The SQL names a production database, or a target parameter does.
_sql_targets_production(_, sql) if _is_production(sql)

_sql_targets_production(tool, _) if {
	some param in tool.target_params
	_is_production(_params[param])
}

# No target parameter at all: the default connection, which we treat as production.
_sql_targets_production(tool, _) if {
	_cfg.assume_production_when_unspecified == true
	every param in tool.target_params {
		not _params[param]
	}
}

_security_tool if data.aarm.catalogue.tools[_name].category == "security_control"

_security_tool if input.action.tool in _cfg.security_tool_namespaces

_wipes_root(command) if {
	some pattern in _cfg.root_wipe_command_patterns
	regex.match(pattern, command)
}

_wipes_root(command) if {
	some segment in regex.split(`[;&|\n]+|\$\(|\x60`, command)
	tokens := [token |
		some raw in regex.split(`\s+`, trim_space(segment))
		token := trim(raw, `"'`)
		token != ""
	]
	some i, program in tokens
	_is_rm(program)
	args := array.slice(tokens, i + 1, count(tokens))
	_recursive_rm(args)
}

_is_rm(program) if program == "rm"

_is_rm(program) if endswith(program, "/rm")

_recursive_rm(args) if "--no-preserve-root" in args

_recursive_rm(args) if {
	_has_recursive_flag(args)
	some arg in args
	not startswith(arg, "-")
	_protected_path(arg)
}

_has_recursive_flag(args) if "--recursive" in args

_has_recursive_flag(args) if {
	some arg in args
	regex.match(`^-[a-zA-Z]*[rR]`, arg)
}

_protected_path(path) if _normalize(path) in _cfg.protected_paths

# "/etc/*" protects like "/etc".
_protected_path(path) if {
	normalized := _normalize(path)
	endswith(normalized, "/*")
	_normalize(trim_suffix(normalized, "/*")) in _cfg.protected_paths
}

_normalize(path) := "/" if trim_right(trim_space(path), "/") == ""

_normalize(path) := trimmed if {
	trimmed := trim_right(trim_space(path), "/")
	trimmed != ""
}
