from django.urls import path

from wallets import views

urlpatterns = [
    path("deposit", views.DepositView.as_view(), name="wallet-deposit"),
    path("withdraw", views.WithdrawView.as_view(), name="wallet-withdraw"),
    path("withdrawals", views.WithdrawalListView.as_view(), name="wallet-withdrawals"),
    path("withdrawals/<uuid:pk>", views.WithdrawalDetailView.as_view(), name="wallet-withdrawal"),
    path("balance", views.BalanceView.as_view(), name="wallet-balance"),
    path("transfer", views.TransferView.as_view(), name="wallet-transfer"),
    path("transactions", views.TransactionsView.as_view(), name="wallet-transactions"),
    path("address", views.AddressView.as_view(), name="wallet-address"),
    path("supported-tokens", views.SupportedTokensView.as_view(), name="wallet-supported-tokens"),
    path("swap", views.SwapView.as_view(), name="wallet-swap"),
    path("webhooks/chipi", views.ChipiWebhookView.as_view(), name="wallet-webhook-chipi"),
]
