-- With broken=true the comparison is flipped and the unit test test_vip_customers fails.
select customer_id, name from {{ ref('stg_customers') }}
where customer_id {{ '>' if var('broken', false) else '<=' }} 1
