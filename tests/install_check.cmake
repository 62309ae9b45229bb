# Installs the build tree into a scratch prefix and runs the installed
# programs with LD_LIBRARY_PATH unset: each must find libpolicyexec through
# its RPATH ($ORIGIN/../lib), and bench_hooks its worker, plugin and Python
# policies in the install tree. Run by CTest (install_rpath).
# The nginx module (when built) carries a $ORIGIN RUNPATH, and the stock
# nginx loads it from the install tree (nginx -t; not with a sanitized
# library, which needs its runtime preloaded into the uninstrumented nginx).
#   cmake -DBUILD=<build dir> -DPREFIX=<scratch> -DBINDIR=bin -DLIBEXECDIR=libexec
#         -DGATEWAY=0|1 -DNGINX_MODULE=0|1 -DSANITIZE=ON|OFF -P install_check.cmake
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install into ${PREFIX} failed: ${rc}")
endif()

function(run_installed)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN}: exit ${rc}\n${out}\n${err}")
  endif()
endfunction()

run_installed("${PREFIX}/${BINDIR}/bench_hooks" --help)
run_installed("${PREFIX}/${LIBEXECDIR}/policyexec-pyworker" --help)
if(GATEWAY)
  run_installed("${PREFIX}/${BINDIR}/policyexec-gateway" --help)
endif()
if(NGINX_MODULE)
  set(module "${PREFIX}/lib/nginx/modules/ngx_http_policyexec_module.so")
  execute_process(COMMAND readelf -d "${module}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT dyn MATCHES [=[Library (runpath|rpath): \[\$ORIGIN/]=])
    message(FATAL_ERROR "${module}: no $ORIGIN RUNPATH (${rc}):\n${dyn}")
  endif()
  if(NOT SANITIZE AND EXISTS /usr/sbin/nginx)
    file(WRITE "${PREFIX}/nginx-check.conf"
         "load_module ${module};\npid ${PREFIX}/nginx-check.pid;\nevents {}\n")
    run_installed(/usr/sbin/nginx -t -p "${PREFIX}" -c "${PREFIX}/nginx-check.conf"
                  -e "${PREFIX}/nginx-check.log")
  endif()
endif()
# A real run: the installed library starts the installed worker.
run_installed("${PREFIX}/${BINDIR}/bench_hooks" --profile native-4 --profile python-4
              --workers 1 --duration 0.2 --warmup 0.05 --no-floor --json)
file(REMOVE_RECURSE "${PREFIX}")
message(STATUS "installed programs run without LD_LIBRARY_PATH")
