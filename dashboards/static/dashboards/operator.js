/* The operator dashboard's charts (Chart.js, served from this project's static files). Amounts
   arrive as decimal strings; they become numbers here for drawing only. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var token = data.token;
  var labels = data.series.map(function (row) { return row.period; });
  var amount = function (key) { return data.series.map(function (row) { return parseFloat(row[key]); }); };
  var money = { ticks: { callback: function (v) { return v + " " + token; } } };
  var common = { responsive: true, maintainAspectRatio: false, animation: false };

  new Chart(document.getElementById("chart-volume"), {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Gross volume", data: amount("gross_volume"), backgroundColor: "#79aec8" },
        { label: "Platform revenue", data: amount("platform_revenue"), type: "line", borderColor: "#e07b39", backgroundColor: "#e07b39" }
      ]
    },
    options: Object.assign({}, common, { plugins: { title: { display: true, text: "Volume and revenue per " + data.period } }, scales: { y: money } })
  });
  new Chart(document.getElementById("chart-flows"), {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Deposits", data: amount("deposits"), backgroundColor: "#70bf2b" },
        { label: "Withdrawals", data: amount("withdrawals"), backgroundColor: "#ba2121" }
      ]
    },
    options: Object.assign({}, common, { plugins: { title: { display: true, text: "Deposits and withdrawals per " + data.period } }, scales: { y: money } })
  });
  new Chart(document.getElementById("chart-sessions"), {
    type: "line",
    data: { labels: labels, datasets: [{ label: "Sessions started", data: data.series.map(function (r) { return r.sessions; }), borderColor: "#417690", fill: false }] },
    options: Object.assign({}, common, { plugins: { title: { display: true, text: "Sessions per " + data.period + " (" + data.active_sessions + " active now)" } } })
  });
  var ranking = function (id, rows, title) {
    new Chart(document.getElementById(id), {
      type: "bar",
      data: {
        labels: rows.map(function (r) { return r.name; }),
        datasets: [{ label: "Gross volume", data: rows.map(function (r) { return parseFloat(r.gross_volume); }), backgroundColor: "#417690" }]
      },
      options: Object.assign({}, common, { indexAxis: "y", plugins: { title: { display: true, text: title }, legend: { display: false } }, scales: { x: money } })
    });
  };
  ranking("chart-services", data.top_services, "Top services");
  ranking("chart-vendors", data.top_vendors, "Top vendors");
})();
