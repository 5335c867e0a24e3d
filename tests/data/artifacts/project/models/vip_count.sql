select count(*) as vip_count from {{ ref('vip_customers') }}
