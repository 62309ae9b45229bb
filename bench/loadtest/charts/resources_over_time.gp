# CPU % and RSS over time of one cell: the proxy under test and its Python
# workers (sum), the backend's CPU and the whole machine's. Called with:
# datafile (columns: seconds, gateway cpu %, gateway RSS MB, workers cpu %,
# workers RSS MB, backend cpu %, machine cpu %; "?" = none), outfile,
# chart_title, t_warm (seconds where the measured run starts; shaded before).
set terminal pngcairo size 900,620 font "DejaVu Sans,10"
set output outfile
set datafile missing "?"
set multiplot layout 2,1 title chart_title
# Same margins in both panels, so their time axes line up.
set lmargin at screen 0.08
set rmargin at screen 0.70
set grid
set key outside right top
set xlabel "seconds since the first sample"
set xrange [0:*]
set object 1 rect from graph 0, graph 0 to first t_warm, graph 1 fc rgb "#eeeeee" fs solid noborder behind
set ylabel "CPU (% of one core)"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot datafile using 1:2 with lines lw 2 title "gateway", \
     datafile using 1:4 with lines lw 2 title "workers (sum)", \
     datafile using 1:6 with lines lw 1 dt 2 title "echo backend", \
     datafile using 1:7 with lines lw 1.5 dt 3 lc rgb "#555555" title "machine (all processes)"
set ylabel "RSS (MB)"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
plot datafile using 1:3 with lines lw 2 title "gateway", \
     datafile using 1:5 with lines lw 2 title "workers (sum)"
unset multiplot
