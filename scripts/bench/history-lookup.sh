#!/usr/bin/env bash
# What the history figures of WIT 1.1 add to the order path's read (issue 15): pgbench
# runs the order path's batched read for one order (customer + 3 lines by sku) with and
# without its three history branches (customer_totals, customer_sku_hours, pending orders), under the
# service's own connection settings (generic plans, no seqscan, no JIT, no parallel
# workers), and prints the mean latency of each.
#
#   scripts/bench/history-lookup.sh <database-url> <user-id> [seconds]
#
# The database is one filled by `orderhost history preload` (and migrated); the user is
# one of its customers (a heavy one: the preload's customers order ~3 000 times a month)
# or one without history. Read-only; sends nothing but SELECTs to 127.0.0.1.
set -euo pipefail
url=${1:?database url}
user=${2:?user id}
secs=${3:-15}
tenant=$(psql "$url" -Atc "select tenant_id from users where id = '$user'")
hour=$(( $(date +%s) / 3600 ))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
base="select u.id as user_id, u.tenant_id, t.slug as tenant_slug, u.vip, u.created_at, u.order_count,
 u.tags, cast(null as text) as product_id, cast(null as text) as stock_id, cast(null as text) as sku,
 cast(null as text) as name, cast(null as bigint) as unit_price, cast(null as text) as currency,
 cast(null as boolean) as active, cast(null as bigint) as available,
 cast(null as text) as vendor, cast(null as text) as category
 from users u join tenants t on t.id = u.tenant_id where u.id = any(array['$user'])
union all select null, p.tenant_id, null, null, null, null, p.tags, p.id, s.id,
 p.sku, p.name, p.unit_price, p.currency, p.active, s.available, p.vendor, p.category
 from products p join stock_items s on s.product_id = p.id where s.id = any(array[]::text[])
union all select null, p.tenant_id, null, null, null, null, p.tags, p.id, s.id,
 p.sku, p.name, p.unit_price, p.currency, p.active, s.available, p.vendor, p.category
 from products p join stock_items s on s.product_id = p.id
 where p.tenant_id = any(array['$tenant']) and p.sku = any(array['HIST-000','HIST-001','HIST-002'])"
history="
union all select ct.user_id, ct.tenant_id, null, null, null, ct.orders, cast('{}' as text[]),
 null, null, null, null, ct.spend, ct.currency, null, null, null, null
 from customer_totals ct where ct.user_id = any(array['$user'])
union all select b.user_id, '', null, null, null, null, cast('{}' as text[]), null, null, b.sku, null,
 cast(sum(b.units) as bigint), null, null,
 cast(sum(case when b.hour >= $((hour - 24)) then b.units else 0 end) as bigint), null, null
 from (select p.sku from products p where p.tenant_id = any(array['$tenant'])
       and p.sku = any(array['HIST-000','HIST-001','HIST-002'])
       union all select p.sku from stock_items s join products p on p.id = s.product_id
       where s.id = any(array[]::text[])) k
 join customer_sku_hours b on b.sku = k.sku
 where b.user_id = any(array['$user']) and b.hour >= $((hour - 720))
 group by b.user_id, b.sku
union all select o.user_id, '', null, null, null, null, cast('{}' as text[]), null, null, l.sku, null,
 cast(sum(l.quantity) as bigint), null, null,
 cast(sum(case when o.created_at >= $(( ($(date +%s) - 86400) * 1000 )) then l.quantity else 0 end) as bigint), null, null
 from orders o join order_lines l on l.order_id = o.id
 where o.user_id = any(array['$user']) and o.status = 'PENDING' and o.created_at >= $(( ($(date +%s) - 2592000) * 1000 ))
 and l.sku in (select p.sku from products p where p.tenant_id = any(array['$tenant'])
       and p.sku = any(array['HIST-000','HIST-001','HIST-002'])
       union all select p.sku from stock_items s join products p on p.id = s.product_id
       where s.id = any(array[]::text[]))
 group by o.user_id, l.sku"
echo "$base;" > "$dir/without.sql"
echo "$base$history;" > "$dir/with.sql"
export PGOPTIONS="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off -c max_parallel_workers_per_gather=0"
echo "rows with history: $(psql "$url" -Atc "$(cat "$dir/with.sql")" | wc -l), without: $(psql "$url" -Atc "$(cat "$dir/without.sql")" | wc -l)"
for script in without with without with; do
  latency=$(pgbench -n -M prepared -c 1 -T "$secs" -f "$dir/$script.sql" "$url" 2>/dev/null \
    | awk '/latency average/ {print $4}')
  echo "$script history: mean $latency ms per read"
done
