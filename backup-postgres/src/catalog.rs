//! The catalog queries behind [`SchemaListing`]: each returns rows of `(kind, object,
//! definition)` text. Identities are schema-qualified and quoted (`format('%I.%I')` or
//! `pg_identify_object`), never OIDs, so they compare across a restore and across servers.

use backup_core::Result;

use crate::inspector::PgInspector;
use crate::schema::{SEQUENCE_VALUE, SchemaEntry, SchemaListing};

/// Objects outside the system schemas.
const USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

/// The first OID handed out to objects created after initdb.
const FIRST_NORMAL_OID: &str = "16384";

/// `NOT EXISTS` a dependency making `objid` of catalog `class` a member of an extension (pg_dump
/// dumps the extension, not its members).
fn not_extension_member(class: &str, objid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{class}'::regclass AND d.objid = {objid} AND d.deptype = 'e')"
    )
}

/// The listing queries for a server of this major version (13 or newer).
fn queries(major: u32) -> Vec<String> {
    let rel_ok = not_extension_member("pg_class", "c.oid");
    let qualified = "format('%I.%I', n.nspname, c.relname)";
    // Tables that inherit (not partitions): plain pg_dump recreates them with the inherited
    // columns first, so their column order is not something a restore can reproduce.
    let inheriting =
        "(EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) AND NOT c.relispartition)";
    let parent_names = |cond: &str| {
        format!(
            "(SELECT string_agg(format('%I.%I', pn.nspname, pc.relname), ',' ORDER BY i.inhseqno)
              FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
              WHERE i.inhrelid = c.oid AND {cond})"
        )
    };
    let sorted_array = |expr: &str| {
        format!("array_to_string(ARRAY(SELECT x::text FROM unnest({expr}) x ORDER BY 1), ',')")
    };
    // Some Debian builds of PostgreSQL 15 give every column a `pg_attver` option of their own,
    // which other builds and versions do not restore: it is not the user's.
    let column_options = "array_to_string(ARRAY(SELECT x::text FROM unnest(a.attoptions) x WHERE x NOT LIKE 'pg_attver=%' ORDER BY 1), ',')";
    vec![
        format!(
            "SELECT 'schema', quote_ident(n.nspname), '' FROM pg_namespace n
             WHERE {USER_NS} AND {}",
            not_extension_member("pg_namespace", "n.oid")
        ),
        format!(
            "SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized-view'
                    WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign-table' ELSE 'composite-type' END,
                    {qualified},
                    concat_ws(' ', 'kind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
                      'row_security=' || c.relrowsecurity::text, 'force_row_security=' || c.relforcerowsecurity::text,
                      'replica_identity=' || c.relreplident::text,
                      'options=' || coalesce({}, ''),
                      'partition_key=' || coalesce(pg_get_partkeydef(c.oid), ''),
                      'partition_of=' || coalesce({}, ''),
                      'bound=' || coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
                      'inherits=' || coalesce({}, ''),
                      'access_method=' || coalesce((SELECT amname::text FROM pg_am WHERE oid = c.relam AND c.relkind IN ('r', 'm')), ''))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND c.relkind IN ('r','p','v','m','S','f','c') AND {rel_ok}",
            sorted_array("c.reloptions"),
            parent_names("c.relispartition"),
            parent_names("NOT c.relispartition"),
        ),
        format!(
            "SELECT 'column', format('%I.%I.%I', n.nspname, c.relname, a.attname),
                    concat_ws(' ',
                      'position=' || CASE WHEN {inheriting} THEN '-' ELSE (row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text END,
                      'type=' || format_type(a.atttypid, a.atttypmod),
                      'not_null=' || a.attnotnull::text, 'generated=' || a.attgenerated::text, 'identity=' || a.attidentity::text,
                      'default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''),
                      'collation=' || coalesce((SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co
                                                JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                                WHERE co.oid = a.attcollation AND a.attcollation <> t.typcollation), ''),
                      'options=' || coalesce({}, ''),
                      'fdw_options=' || coalesce({}, ''))
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE {USER_NS} AND c.relkind IN ('r','p','v','m','f','c') AND a.attnum > 0 AND NOT a.attisdropped AND {rel_ok}",
            column_options,
            sorted_array("a.attfdwoptions"),
        ),
        // Foreign keys a partition inherits from its parent (conparentid <> 0) are not dumped:
        // PostgreSQL creates them again when the partition is attached, with new names.
        // NOT NULL constraints (PG 18's contype 'n') are covered by the columns' not_null.
        format!(
            "SELECT 'constraint', format('%I.%I.%I', n.nspname, c.relname, co.conname),
                    co.contype::text || ' ' || pg_get_constraintdef(co.oid)
             FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND co.contype <> 'n' AND NOT (co.contype = 'f' AND co.conparentid <> 0) AND {rel_ok}"
        ),
        format!(
            "SELECT 'domain-constraint', format('%I.%I.%I', n.nspname, t.typname, co.conname), pg_get_constraintdef(co.oid)
             FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE {USER_NS} AND co.contype <> 'n' AND {}",
            not_extension_member("pg_type", "t.oid")
        ),
        // pg_dump dumps valid indexes only (and partitioned ones, which are never "valid" until
        // every partition has its index).
        format!(
            "SELECT 'index', format('%I.%I', n.nspname, ic.relname),
                    pg_get_indexdef(ic.oid)
                    || coalesce(' attached to ' || (SELECT format('%I.%I', pn.nspname, pc.relname) FROM pg_inherits i
                        JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                        WHERE i.inhrelid = ic.oid), '')
                    || CASE WHEN x.indisclustered THEN ' clustered' ELSE '' END
                    || CASE WHEN x.indisreplident THEN ' replica-identity' ELSE '' END
             FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = ic.relnamespace
             WHERE {USER_NS} AND (x.indisvalid OR ic.relkind = 'I') AND {rel_ok}"
        ),
        format!(
            "SELECT CASE WHEN c.relkind = 'm' THEN 'materialized-view-body' ELSE 'view-body' END, {qualified}, pg_get_viewdef(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND c.relkind IN ('v', 'm') AND {rel_ok}"
        ),
        format!(
            "SELECT 'rule', format('%I.%I.%I', n.nspname, c.relname, r.rulename), pg_get_ruledef(r.oid) || ' enabled=' || r.ev_enabled::text
             FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND r.rulename <> '_RETURN' AND {rel_ok}"
        ),
        // Clone triggers of partitions (tgparentid <> 0) are created again on attach.
        format!(
            "SELECT 'trigger', format('%I.%I.%I', n.nspname, c.relname, t.tgname), pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND NOT t.tgisinternal AND t.tgparentid = 0 AND {rel_ok}"
        ),
        format!(
            "SELECT 'policy', format('%I.%I.%I', n.nspname, c.relname, p.polname),
                    concat_ws(' ', 'command=' || p.polcmd::text, 'permissive=' || p.polpermissive::text,
                      'roles=' || coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(r)::text) END, ',' ORDER BY 1)
                                            FROM unnest(p.polroles) r), ''),
                      'using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
                      'check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
             FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS}"
        ),
        format!(
            "SELECT 'function', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                    concat_ws(' ', 'kind=' || p.prokind::text, 'returns=' || coalesce(pg_get_function_result(p.oid), ''),
                      'language=' || l.lanname::text, 'volatility=' || p.provolatile::text, 'strict=' || p.proisstrict::text,
                      'security_definer=' || p.prosecdef::text, 'leakproof=' || p.proleakproof::text,
                      'parallel=' || p.proparallel::text, 'cost=' || p.procost::text, 'rows=' || p.prorows::text,
                      'config=' || coalesce({}, ''),
                      'source=' || md5(coalesce(p.prosrc, '')),
                      'sql_body=' || {},
                      'library=' || coalesce(p.probin, ''))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
             WHERE {USER_NS} AND {}",
            sorted_array("p.proconfig"),
            if major >= 14 { "coalesce(md5(pg_get_function_sqlbody(p.oid)), '')" } else { "''" },
            not_extension_member("pg_proc", "p.oid")
        ),
        // Types of their own (not a table's row type, not an array type made for another type).
        format!(
            "SELECT 'type', format('%I.%I', n.nspname, t.typname),
                    concat_ws(' ', 'kind=' || t.typtype::text,
                      'labels=' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder)
                                             FROM pg_enum e WHERE e.enumtypid = t.oid), ''),
                      'base=' || CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END,
                      'not_null=' || t.typnotnull::text, 'default=' || coalesce(t.typdefault, ''),
                      'range_of=' || coalesce((SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid), ''))
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE {USER_NS} AND t.typtype IN ('b', 'd', 'e', 'r', 'm')
               AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid) AND {}",
            not_extension_member("pg_type", "t.oid")
        ),
        format!(
            "SELECT 'sequence-definition', {qualified},
                    concat_ws(' ', 'type=' || format_type(s.seqtypid, NULL), 'start=' || s.seqstart::text,
                      'increment=' || s.seqincrement::text, 'min=' || s.seqmin::text, 'max=' || s.seqmax::text,
                      'cache=' || s.seqcache::text, 'cycle=' || s.seqcycle::text,
                      'owned_by=' || coalesce((SELECT format('%I.%I.%I', tn.nspname, tc.relname, ta.attname)
                        FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                        JOIN pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                          AND d.deptype IN ('a', 'i') LIMIT 1), ''))
             FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND {rel_ok}"
        ),
        sequence_values_query(),
        // Comments, on every user object (pg_identify_object names them without OIDs).
        format!(
            "SELECT 'comment', o.type || ' ' || o.identity, d.description
             FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o
             WHERE d.objoid >= {FIRST_NORMAL_OID} AND o.identity IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = d.classoid AND x.objid = d.objoid AND x.deptype = 'e')
               AND coalesce(o.schema, '') !~ '^pg_(toast|temp_|toast_temp_)' AND coalesce(o.schema, '') NOT IN ('pg_catalog', 'information_schema')
               AND NOT (d.classoid = 'pg_constraint'::regclass AND EXISTS (SELECT 1 FROM pg_constraint co
                        WHERE co.oid = d.objoid AND co.contype = 'f' AND co.conparentid <> 0))"
        ),
        // Everything else a user can create, by identity: operators, operator classes and
        // families, casts, conversions, text search objects, foreign-data wrappers and servers, statistics objects, transforms, access methods, collations, event
        // triggers, publications and their members, languages, extensions, large objects.
        other_objects(major),
        // pg_user_mapping itself is readable by superusers only; its view by anyone.
        "SELECT 'object', 'user mapping for ' || quote_ident(usename::text) || ' on server ' || quote_ident(srvname::text), ''
         FROM pg_user_mappings".to_owned(),
    ]
}

/// Every sequence's value (`last_value`, or `unset`), read when it runs: sequences are not
/// transactional.
fn sequence_values_query() -> String {
    let rel_ok = not_extension_member("pg_class", "c.oid");
    let qualified = "format('%I.%I', n.nspname, c.relname)";
    format!(
            "SELECT '{SEQUENCE_VALUE}', {qualified}, coalesce(pg_sequence_last_value(c.oid)::text, 'unset')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND c.relkind = 'S' AND c.relpersistence <> 'u' AND {rel_ok}"
        )
}

fn other_objects(major: u32) -> String {
    let mut catalogs = vec![
        "pg_operator",
        "pg_opclass",
        "pg_opfamily",
        "pg_cast",
        "pg_conversion",
        "pg_ts_config",
        "pg_ts_dict",
        "pg_ts_parser",
        "pg_ts_template",
        "pg_foreign_data_wrapper",
        "pg_foreign_server",
        "pg_statistic_ext",
        "pg_transform",
        "pg_am",
        "pg_collation",
        "pg_event_trigger",
        "pg_publication",
        "pg_publication_rel",
        "pg_language",
        "pg_extension",
    ];
    if major >= 15 {
        catalogs.push("pg_publication_namespace");
    }
    let union = catalogs
        .iter()
        .map(|c| format!("SELECT '{c}'::regclass AS classid, oid AS objid FROM {c} WHERE oid >= {FIRST_NORMAL_OID}"))
        .chain(std::iter::once(
            "SELECT 'pg_largeobject'::regclass, oid FROM pg_largeobject_metadata".to_owned(),
        ))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!(
        "SELECT 'object', o.type || ' ' || o.identity,
                CASE WHEN u.classid = 'pg_statistic_ext'::regclass THEN coalesce(pg_get_statisticsobjdef(u.objid), '')
                     WHEN u.classid = 'pg_event_trigger'::regclass THEN (SELECT evtevent || ' enabled=' || evtenabled::text
                        || ' function=' || evtfoid::regprocedure::text || ' tags=' || coalesce(array_to_string(evttags, ','), '')
                        FROM pg_event_trigger WHERE oid = u.objid)
                     ELSE '' END
         FROM ({union}) u, LATERAL pg_identify_object(u.classid, u.objid, 0) o
         WHERE o.identity IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = u.classid AND x.objid = u.objid AND x.deptype = 'e')
           AND coalesce(o.schema, '') !~ '^pg_(toast|temp_|toast_temp_)'"
    )
}

/// Owners (from pg_shdepend: every object not owned by the bootstrap superuser) and grants
/// (ACLs made explicit: a NULL ACL is the owner's default, as pg_dump sees it).
fn privilege_queries() -> Vec<String> {
    let acl = |col: &str, kind: char, owner: &str| {
        format!(
            "array_to_string(ARRAY(SELECT x::text FROM unnest(coalesce({col}, acldefault('{kind}', {owner}))) x ORDER BY 1), ',')"
        )
    };
    vec![
        format!(
            "SELECT 'owner', o.type || ' ' || o.identity, 'owner=' || r.rolname::text
             FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid, LATERAL pg_identify_object(s.classid, s.objid, s.objsubid) o
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.deptype = 'o'
               AND o.identity IS NOT NULL AND coalesce(o.schema, '') !~ '^pg_(toast|temp_|toast_temp_)'
               AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = s.classid AND x.objid = s.objid AND x.deptype = 'e')
               AND NOT (s.classid = 'pg_type'::regclass AND EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = s.objid
                        AND (t.typrelid <> 0 OR EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid))))"
        ),
        format!(
            "SELECT 'acl', CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END || format('%I.%I', n.nspname, c.relname),
                    CASE c.relkind WHEN 'S' THEN {} ELSE {} END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND c.relkind IN ('r','p','v','m','S','f') AND {}",
            acl("c.relacl", 's', "c.relowner"),
            acl("c.relacl", 'r', "c.relowner"),
            not_extension_member("pg_class", "c.oid")
        ),
        format!(
            "SELECT 'acl', 'column ' || format('%I.%I.%I', n.nspname, c.relname, a.attname),
                    array_to_string(ARRAY(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1), ',')
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NS} AND a.attacl IS NOT NULL AND cardinality(a.attacl) > 0 AND NOT a.attisdropped"
        ),
        format!(
            "SELECT 'acl', 'function ' || format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), {}
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NS} AND {}",
            acl("p.proacl", 'f', "p.proowner"),
            not_extension_member("pg_proc", "p.oid")
        ),
        format!(
            "SELECT 'acl', 'schema ' || quote_ident(n.nspname), {} FROM pg_namespace n WHERE {USER_NS} AND {}",
            acl("n.nspacl", 'n', "n.nspowner"),
            not_extension_member("pg_namespace", "n.oid")
        ),
        format!(
            "SELECT 'acl', 'type ' || format('%I.%I', n.nspname, t.typname), {}
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE {USER_NS} AND t.typtype IN ('b', 'd', 'e', 'r', 'm') AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid) AND {}",
            acl("t.typacl", 'T', "t.typowner"),
            not_extension_member("pg_type", "t.oid")
        ),
        format!(
            "SELECT 'acl', 'large object ' || m.oid::text, {} FROM pg_largeobject_metadata m",
            acl("m.lomacl", 'L', "m.lomowner")
        ),
        format!(
            "SELECT 'acl', 'foreign-data wrapper ' || quote_ident(w.fdwname), {} FROM pg_foreign_data_wrapper w WHERE w.oid >= {FIRST_NORMAL_OID} AND {}",
            acl("w.fdwacl", 'F', "w.fdwowner"),
            not_extension_member("pg_foreign_data_wrapper", "w.oid")
        ),
        format!(
            "SELECT 'acl', 'server ' || quote_ident(s.srvname), {} FROM pg_foreign_server s WHERE s.oid >= {FIRST_NORMAL_OID}",
            acl("s.srvacl", 'S', "s.srvowner")
        ),
        "SELECT 'default-acl', coalesce(pg_get_userbyid(d.defaclrole)::text, '') || ' in ' || coalesce(quote_ident(n.nspname), '*') || ' on ' || d.defaclobjtype::text,
                array_to_string(ARRAY(SELECT x::text FROM unnest(d.defaclacl) x ORDER BY 1), ',')
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace".to_owned(),
    ]
}

impl PgInspector {
    /// Every sequence's value now, as listing entries of kind
    /// [`SEQUENCE_VALUE`](crate::SEQUENCE_VALUE). Read before pg_dump starts, they are a lower
    /// bound of what it dumps (sequences only move forward unless someone calls `setval`).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn sequence_values(&self) -> Result<Vec<SchemaEntry>> {
        let rows = self
            .client
            .query(sequence_values_query().as_str(), &[])
            .await
            .map_err(|e| self.query_error("reading sequences", &e))?;
        Ok(rows
            .iter()
            .map(|r| SchemaEntry {
                kind: r.get::<_, Option<String>>(0).unwrap_or_default(),
                object: r.get::<_, Option<String>>(1).unwrap_or_default(),
                definition: r.get::<_, Option<String>>(2).unwrap_or_default(),
            })
            .collect())
    }

    /// Lists what a restore of this database must reproduce (see [`SchemaListing`]), in the
    /// current transaction (the exported snapshot, when called after
    /// [`export_snapshot`](Self::export_snapshot)).
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn schema_listing(&self) -> Result<SchemaListing> {
        let (_, major) = self.server_version().await?;
        let mut entries = Vec::new();
        for sql in queries(major).iter().chain(privilege_queries().iter()) {
            let rows = self
                .client
                .query(sql.as_str(), &[])
                .await
                .map_err(|e| self.query_error("reading the schema", &e))?;
            entries.extend(rows.iter().map(|r| SchemaEntry {
                kind: r.get::<_, Option<String>>(0).unwrap_or_default(),
                object: r.get::<_, Option<String>>(1).unwrap_or_default(),
                definition: r.get::<_, Option<String>>(2).unwrap_or_default(),
            }));
        }
        Ok(SchemaListing::new(entries))
    }
}
