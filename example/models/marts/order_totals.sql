-- One row per order with what was paid, split by payment method.
with payments as (
    select
        order_id,
        sum(amount) as amount,
        sum(case when payment_method = 'credit_card' then amount else 0 end) as credit_card_amount,
        sum(case when payment_method = 'bank_transfer' then amount else 0 end) as bank_transfer_amount,
        sum(case when payment_method in ('gift_card', 'voucher') then amount else 0 end) as prepaid_amount,
        count(*) as payment_count
    from {{ ref('stg_payments') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.status,
    coalesce(p.amount, 0) as amount,
    coalesce(p.credit_card_amount, 0) as credit_card_amount,
    coalesce(p.bank_transfer_amount, 0) as bank_transfer_amount,
    coalesce(p.prepaid_amount, 0) as prepaid_amount,
    coalesce(p.payment_count, 0) as payment_count
from {{ ref('stg_orders') }} as o
left join payments as p using (order_id)
