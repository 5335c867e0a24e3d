-- With broken=true the null order ids get through and not_null_stg_orders_order_id fails.
select order_id, customer_id, status, amount
from {{ ref('raw_orders') }}
{% if not var('broken', false) %}where order_id is not null{% endif %}
