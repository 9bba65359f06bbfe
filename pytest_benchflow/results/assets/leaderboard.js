(function(){
// A cell of the pairwise matrix opens the samples where its two agents disagree (the URL's #pair-… too).
function open(id){
  document.querySelectorAll('.disagreements').forEach(d=>{d.hidden=d.id!==id;});
  document.querySelectorAll('.pair').forEach(c=>{c.classList.toggle('open',c.dataset.target===id);});
}
document.querySelectorAll('.pair[data-target]').forEach(c=>c.addEventListener('click',()=>{open(c.dataset.target);history.replaceState(null,'','#'+c.dataset.target);}));
if(location.hash.startsWith('#pair-')) open(decodeURIComponent(location.hash.slice(1)));
})();
