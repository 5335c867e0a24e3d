select
    id as customer_id,
    first_name,
    last_name,
    -- The seed has blank emails for customers who signed up in the shop.
    nullif(trim(email), '') as email,
    signed_up_at
from {{ ref('raw_customers') }}
