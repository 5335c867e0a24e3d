-- One row per customer: order history and lifetime value (returned orders excluded).
with per_customer as (
    select
        customer_id,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        count(*) as order_count,
        sum(case when status not in ('returned', 'return_pending') then amount else 0 end) as lifetime_value
    from {{ ref('order_totals') }}
    group by customer_id
)

select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.signed_up_at,
    pc.first_ordered_at,
    pc.last_ordered_at,
    coalesce(pc.order_count, 0) as order_count,
    coalesce(pc.lifetime_value, 0) as lifetime_value
from {{ ref('stg_customers') }} as c
left join per_customer as pc using (customer_id)
