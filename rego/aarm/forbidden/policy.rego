# METADATA
# title: Forbidden actions
# description: |
#   Tier 1 of the AARM precedence. Actions that are never acceptable, whatever the
#   facts, identity or approvals say, decided on what the action does (input.analysis),
#   never on how its strings are spelled: dropping a production database, schema or
#   table (by tool, by SQL wherever it is: statements, DO blocks, function bodies,
#   dynamic SQL folded from constants, a shell's psql -c); running a program on the
#   database server (COPY ... TO PROGRAM); recursively deleting a protected path or
#   deleting inside a system tree (by tool or by shell, through any quoting, globbing,
#   cd, nesting or encoding); writing to or formatting a block device and wiping
#   permissions of protected paths; disabling security controls or audit logging.
#   Each finding is a DENY reason with code "forbidden". No fact can lift one. A tool
#   is judged by what the catalogue declares about it (its category and the semantic
#   type of each parameter: database, path, flag), never by its name.
# related_resources:
#   - ref: docs/policies/forbidden.md
#     description: forbidden policy page
# schemas:
#   - input: schema.input
package aarm.forbidden

import data.aarm.layers

import data.aarm.analysis
import data.aarm.catalogue
import data.aarm.explain

_cfg := layers.config.forbidden

_production := layers.config.production

_name := input.action.name

_params := input.action.parameters

# METADATA
# title: reasons
# description: A DENY reason for each forbidden effect the action has.
# custom:
#   rule_id: aarm.forbidden.drop_production_database
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), param, sprintf(
	"%s of database %q (parameter %q) is forbidden: production databases are never dropped by an agent, whatever the request context claims",
	[_name, _params[param], param],
)) if {
	_destroys_database
	some param in catalogue.parameters_of({"database"})
	analysis.production_param(param)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.drop_production_database
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q runs %s %s on a production (or unspecified) database; dropping production data is forbidden",
	[_name, s.param, statement.command, _targets(statement)],
)) if {
	some s in analysis.sql
	s.facts.parsed == true
	some statement in s.facts.statements
	statement.command in _cfg.drop_commands
	_on_production(s, statement)
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.sql_server_program
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q runs a program on the database server (COPY ... TO/FROM PROGRAM); agents never execute commands on a database host",
	[_name, s.param],
)) if {
	some s in analysis.sql
	s.facts.parsed == true
	s.facts.executes_program == true
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.recursive_root_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q recursively deletes a protected path (%s); rm -rf / and its variants are forbidden",
	[_name, s.param, _deleted(s.facts)],
)) if {
	some s in analysis.shell
	s.facts.effects.root_wipe == true
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.recursive_root_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), param, sprintf(
	"%s of protected path %q (parameter %q, resolves to %s) is forbidden",
	[_name, _params[param], param, _resolved(param)],
)) if {
	some param in _deleted_paths
	_path_flag(param, "protected")
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.system_path_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q deletes inside a system tree (%s); agents never delete system files",
	[_name, s.param, _deleted(s.facts)],
)) if {
	some s in analysis.shell
	s.facts.effects.system_delete == true
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.system_path_delete
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), param, sprintf(
	"%s of %q (parameter %q, resolves to %s) deletes inside a system tree; agents never delete system files",
	[_name, _params[param], param, _resolved(param)],
)) if {
	some param in _deleted_paths
	_path_flag(param, "system")
	not _path_flag(param, "protected")
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.device_or_permission_wipe
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q %s; destroying a disk or the permissions of the system is forbidden",
	[_name, s.param, concat(" and ", sort(effects))],
)) if {
	some s in analysis.shell
	effects := {_wipe_effects[effect] | some effect, _ in _wipe_effects; s.facts.effects[effect] == true}
	count(effects) > 0
}

_wipe_effects := {
	"device_write": "writes to a block device",
	"format_device": "formats a device",
	"permission_wipe": "wipes the permissions or ownership of a protected path",
}

# METADATA
# custom:
#   rule_id: aarm.forbidden.disable_security_control
#   code: forbidden
reasons contains _reason(rego.metadata.rule(), null, sprintf(
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
reasons contains _reason(rego.metadata.rule(), s.param, sprintf(
	"%s parameter %q runs %q, which disables a security control or audit logging",
	[_name, s.param, concat(" ", command.argv)],
)) if {
	some s in analysis.shell
	some command in s.facts.commands
	some rule in _cfg.security_disable_commands
	_disables(rule, command)
}

_destructive if catalogue.category in _cfg.destructive_categories

# A destructive tool whose database parameter names what it destroys: it declares no
# parameter naming something inside the database (a table, rows, a statement, a file),
# so the database itself goes.
_destroys_database if {
	_destructive
	not catalogue.declares({t | some t in _cfg.database_content_semantics})
}

# The path parameters of a destructive tool (given a value): what it deletes.
_deleted_paths contains param if {
	_destructive
	some param in catalogue.parameters_of({"path"})
	analysis.given(param)
}

# No fact, approval or request context lifts a forbidden action: nothing changes it.
_reason(meta, param, message) := explain.reason(meta, message, param, null, _never)

_never := explain.nothing("nothing: no fact, approval or request context lifts a forbidden action")

# A statement runs against production when a database or schema it targets reads as
# production, or the parameters naming its connection do, or none names it (the
# default connection, a shell client's unknown one) and the config assumes production.
_on_production(_, statement) if {
	some target in statement.targets
	some raw in [target.database, target.schema]
	analysis.production_target(raw)
}

_on_production(s, _) if {
	some param in s.connection
	analysis.production_param(param)
}

_on_production(s, _) if {
	_production.assume_when_unspecified == true
	every param in s.connection {
		not analysis.given(param)
	}
}

_targets(statement) := concat(", ", sort({_target_name(t) | some t in statement.targets}))

_target_name(t) := concat(".", [part | some part in [t.database, t.schema, t.name]; is_string(part)])

_deleted(f) := concat(", ", sort({t.normalized |
	some d in f.deletes
	some t in d.targets
	is_string(t.normalized)
}))

_path_flag(param, flag) if {
	some f in analysis.values(param)
	f[flag] == true
}

# A path parameter given but not analysed is read as protected (its most dangerous reading).
_path_flag(param, _) if {
	analysis.given(param)
	not analysis.facts[param]
}

_resolved(param) := concat(" / ", sort({reading |
	some f in analysis.values(param)
	some reading in [f.normalized, object.get(f, "decoded", null)]
	is_string(reading)
})) if analysis.facts[param]

else := "an unanalysed path"

_security_tool if catalogue.category == "security_control"

# A tool nobody catalogued is judged by its namespace (it has no declaration to go by).
_security_tool if {
	not catalogue.known
	input.action.tool in _cfg.security_tool_namespaces
}

# A command disables a control when its program is one the rule names and, for each
# alternative set of the rule, one of its arguments is in the set (case-insensitive).
_disables(rule, command) if {
	lower(command.program) in rule.programs
	args := {lower(arg) | some i, arg in command.argv; i > 0}
	every alternatives in rule.all_of {
		some arg in args
		arg in alternatives
	}
}
